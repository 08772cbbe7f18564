package web_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tokenbroker/tokenbroker/fakeidp"
)

const chromiumPath = "/usr/bin/chromium"

// TestBrowserConnectFlow drives a real headless Chromium through the whole
// flow: the connect page, the Connect button, fakeidp's login page, the
// callback and the page that says "Connected as alice". It checks what only
// a browser checks: that the binding cookie as set (HttpOnly, SameSite=Lax,
// two paths) comes back on the POST and on the provider's redirect to the
// callback, that the content security policy lets the flow through
// (Chromium applies form-action to the redirect that follows the form's
// POST: with form-action 'self' alone this test times out), and that the
// page renders. Set WEB_SCREENSHOT=file.png to keep a screenshot.
func TestBrowserConnectFlow(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but no browser at %s: %v", chromiumPath, err)
		}
		t.Skipf("no %s (apt-get install chromium)", chromiumPath)
	}
	e := MustStartEnv(t, envOptions{idp: fakeidp.Config{}}) // no auto-approve: the login page
	connectURL := e.MustSession("u1", "")

	browserCtx := MustStartChromium(t, 20*time.Second)

	fail := func(what string, err error) {
		t.Helper()
		t.Fatalf("browser: %s: %v\nserver log:\n%s", what, err, e.logs.String())
	}
	err := chromedp.Do(browserCtx,
		chromedp.Navigate(connectURL),
		chromedp.WaitVisible(chromedp.CSS(`button[type=submit]`)),
	)
	if err != nil {
		fail("open the connect page", err)
	}
	status, err := chromedp.Run(browserCtx, chromedp.Text(chromedp.CSS(`.status`)))
	if err != nil {
		fail("read the status", err)
	}
	err = chromedp.Do(browserCtx,
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		// fakeidp's login page: type the user and approve.
		chromedp.WaitVisible(chromedp.ID(`login`)),
		chromedp.SetValue(chromedp.ID(`username`), "alice"),
		chromedp.Click(chromedp.CSS(`button[value=approve]`)),
		// Back on the connect page.
		chromedp.WaitVisible(chromedp.CSS(`.status-ok`)),
	)
	if err != nil {
		fail("connect", err)
	}
	statusHTML, err := chromedp.Run(browserCtx, chromedp.Text(chromedp.CSS(`.status-ok`)))
	if err != nil {
		fail("read the new status", err)
	}
	banner, err := chromedp.Run(browserCtx, chromedp.Text(chromedp.CSS(`[role=status]`)))
	if err != nil {
		fail("read the banner", err)
	}
	shot, err := chromedp.Run(browserCtx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		fail("screenshot", err)
	}
	if !strings.Contains(banner, "Connected Demo as alice") {
		t.Errorf("banner = %q", banner)
	}
	if status != "Not connected" {
		t.Errorf("status before = %q, want %q", status, "Not connected")
	}
	if strings.TrimSpace(statusHTML) != "Connected as alice" {
		t.Errorf("status after = %q, want %q", statusHTML, "Connected as alice")
	}
	l, err := e.store.GetLink(context.Background(), "u1", "demo")
	if err != nil || l.AccountLogin != "alice" || l.Token.AccessToken == "" {
		t.Fatalf("link = %+v, %v", l, err)
	}
	if !bytes.HasPrefix(shot, []byte("\x89PNG")) {
		t.Errorf("screenshot is not a PNG (%d bytes)", len(shot))
	}
	out := filepath.Join(t.TempDir(), "connected.png")
	if p := os.Getenv("WEB_SCREENSHOT"); p != "" {
		out = p
	}
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", out)
}

// MustStartChromium starts a headless Chromium with a fresh profile and
// returns a chromedp context for its first tab; the browser is killed after
// limit at the latest. At cleanup the browser is closed, and any process
// still running with this test's profile directory (Chromium's helpers can
// outlive their parent) is killed by pid, so no process is left behind.
func MustStartChromium(tb testing.TB, limit time.Duration) context.Context {
	tb.Helper()
	dir := tb.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
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
	want := []byte("--user-data-dir=" + dir)
	deadline := time.Now().Add(5 * time.Second)
	for {
		entries, err := os.ReadDir("/proc")
		if err != nil {
			return
		}
		var left []int
		for _, entry := range entries {
			pid, err := strconv.Atoi(entry.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			cmdline, err := os.ReadFile("/proc/" + entry.Name() + "/cmdline")
			if err == nil && bytes.Contains(cmdline, append(want, 0)) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return
		}
		tb.Logf("killing %d chromium helper processes left behind", len(left))
		if time.Now().After(deadline) {
			tb.Errorf("chromium processes still running after kill: %v", left)
			return
		}
		for _, pid := range left {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Kill()
			}
		}
		time.Sleep(10 * time.Millisecond) // a killed process takes a moment to go
	}
}
