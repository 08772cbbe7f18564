// Package browsertest starts a headless Chromium for tests that drive pages
// with chromedp.
package browsertest

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tokenbroker/tokenbroker/internal/testenv"
)

// ChromiumPath is where the tests expect the browser.
const ChromiumPath = "/usr/bin/chromium"

// MustStart starts a headless Chromium with a fresh profile and returns a
// chromedp context for its first tab; the browser is killed after limit at
// the latest. Without a browser at [ChromiumPath] the test is skipped, or
// fails when CI=true. At cleanup the browser is closed, and any process
// still running with this test's profile directory (Chromium's helpers can
// outlive their parent) is killed by pid, so no process is left behind.
func MustStart(tb testing.TB, limit time.Duration) context.Context {
	tb.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		testenv.Missing(tb, "no %s (apt-get install -y chromium)", ChromiumPath)
	}
	dir := tb.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(ChromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.WindowSize(900, 700),
		chromedp.UserDataDir(dir),
	)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	tb.Cleanup(func() {
		// Close the browser gracefully (it waits for the process to
		// exit), then the allocator.
		if err := chromedp.Cancel(browserCtx); err != nil && ctx.Err() == nil {
			tb.Logf("close browser: %v", err)
		}
		cancelBrowser()
		cancelAlloc()
		cancel()
		killProfileProcesses(tb, dir)
	})
	// Start the browser now, so a failure to start is reported as such.
	if err := chromedp.Do(browserCtx); err != nil {
		tb.Fatalf("start chromium: %v", err)
	}
	return browserCtx
}

// killProfileProcesses kills, by pid, every process whose command line
// names the profile directory dir (unique to this test), until none is left.
func killProfileProcesses(tb testing.TB, dir string) {
	tb.Helper()
	want := append([]byte("--user-data-dir="+dir), 0)
	deadline := time.Now().Add(5 * time.Second)
	for {
		entries, err := os.ReadDir("/proc")
		if err != nil {
			return
		}
		var left []int
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err == nil && bytes.Contains(cmdline, want) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Errorf("chromium processes still running after kill: %v", left)
			return
		}
		tb.Logf("killing %d chromium helper processes left behind", len(left))
		for _, pid := range left {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Kill()
			}
		}
		time.Sleep(10 * time.Millisecond) // a killed process takes a moment to go
	}
}
