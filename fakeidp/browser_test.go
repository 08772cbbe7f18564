package fakeidp_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"golang.org/x/oauth2"
)

const chromiumPath = "/usr/bin/chromium"

// TestBrowserPages drives a real headless Chromium through the login page
// (picking a user from the list and clicking Approve) and the device
// verification page (typing the user code and a new username), then
// redeems the results with x/oauth2. It proves what only a browser can:
// the forms submit what the server expects.
func TestBrowserPages(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but no browser at %s: %v", chromiumPath, err)
		}
		t.Skipf("no %s (apt-get install chromium)", chromiumPath)
	}
	if testing.Short() {
		t.Skip("browser test in -short mode")
	}
	// The client's callback: it hands the redirect's query to the test.
	callbacks := make(chan url.Values, 1)
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case callbacks <- r.URL.Query():
		default:
		}
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(`<!doctype html><p id="done">back at the client</p>`))
	}))
	defer cb.Close()

	s := MustStart(t, fakeidp.Config{RequirePKCE: true})
	conf := s.OAuth2Config(cb.URL+"/callback", "read")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	browser := MustStartChromium(t, ctx)

	// Code flow: pick bob from the list and approve.
	verifier := oauth2.GenerateVerifier()
	err := chromedp.Do(browser,
		chromedp.Navigate(conf.AuthCodeURL("st-browser", oauth2.S256ChallengeOption(verifier))),
		chromedp.WaitVisible(chromedp.ID(`login`)),
		chromedp.SetValue(chromedp.ID(`login`), "bob"),
		chromedp.Click(chromedp.CSS(`button[value=approve]`)),
		chromedp.WaitVisible(chromedp.ID(`done`)),
	)
	if err != nil {
		t.Fatalf("browser, login page: %v", err)
	}
	q := <-callbacks
	if q.Get("state") != "st-browser" {
		t.Fatalf("callback query: %v", q)
	}
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if ui := Userinfo(t, s, tok.AccessToken); ui.Str("login") != "bob" {
		t.Fatalf("userinfo after the browser login: %s", ui.Body)
	}

	// Device flow: type the code (lower case, as people do) and a new
	// username on the verification page.
	da, err := conf.DeviceAuth(ctx)
	if err != nil {
		t.Fatalf("DeviceAuth: %v", err)
	}
	err = chromedp.Do(browser,
		chromedp.Navigate(da.VerificationURI),
		chromedp.WaitVisible(chromedp.ID(`user_code`)),
		chromedp.SendKeys(chromedp.ID(`user_code`), strings.ToLower(da.UserCode)),
		chromedp.SendKeys(chromedp.ID(`username`), "dave"),
		chromedp.Click(chromedp.CSS(`button[value=approve]`)),
		chromedp.WaitVisible(chromedp.ID(`result`)), // only on the page after the POST
	)
	if err != nil {
		t.Fatalf("browser, device page: %v", err)
	}
	h1, err := chromedp.Run(browser, chromedp.Text(chromedp.ID(`result`)))
	if err != nil || h1 != "Device connected" {
		t.Fatalf("device page heading %q, %v", h1, err)
	}
	r := poll(t, s, da.DeviceCode)
	wantStatus(t, r, http.StatusOK)
	if ui := Userinfo(t, s, r.Str("access_token")); ui.Str("login") != "dave" {
		t.Fatalf("userinfo after the device page: %s", ui.Body)
	}
}

// MustStartChromium starts a headless Chromium with a fresh profile and
// makes sure, when the test ends, that none of its processes is left.
func MustStartChromium(tb testing.TB, ctx context.Context) context.Context {
	tb.Helper()
	dir := tb.TempDir()
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
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.UserDataDir(dir),
	)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	tb.Cleanup(func() {
		if err := chromedp.Cancel(browserCtx); err != nil && ctx.Err() == nil {
			tb.Logf("close browser: %v", err)
		}
		cancelBrowser()
		cancelAlloc()
		killProfileProcesses(tb, dir)
	})
	if err := chromedp.Do(browserCtx); err != nil {
		tb.Fatalf("start chromium: %v", err)
	}
	return browserCtx
}

// killProfileProcesses kills, by pid, every process whose command line
// names the profile directory dir (unique to this test), until none is
// left.
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
			tb.Errorf("chromium processes still running: %v", left)
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
