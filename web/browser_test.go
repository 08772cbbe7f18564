package web_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/browsertest"
)

// connectAsAlice are the steps of a browser on the connect page: press
// Connect, type the user alice on fakeidp's login page and approve, and be
// back on the connect page with the link made.
var connectAsAlice = []chromedp.Action[chromedp.Void]{
	chromedp.Click(chromedp.CSS(`button[type=submit]`)),
	chromedp.WaitVisible(chromedp.ID(`login`)),
	chromedp.SetValue(chromedp.ID(`username`), "alice"),
	chromedp.Click(chromedp.CSS(`button[value=approve]`)),
	chromedp.WaitVisible(chromedp.CSS(`.status-ok`)),
}

// TestBrowserConnectFlow drives a real headless Chromium through the whole
// flow: the connect page, the Connect button, fakeidp's login page, the
// callback and the page that says "Connected as alice". It checks what only
// a browser checks: that the binding cookie as set (HttpOnly, SameSite=Lax,
// two paths) comes back on the POST and on the provider's redirect to the
// callback, that the content security policy (form-action 'self') lets
// the flow through (Chromium applies form-action to redirects that follow
// a form's POST, so the POST answers with a page that goes on to the
// provider), and that the page renders. Set WEB_SCREENSHOT=file.png to keep a screenshot.
func TestBrowserConnectFlow(t *testing.T) {
	browserCtx := browsertest.MustStart(t, 20*time.Second)
	e := MustStartEnv(t, envOptions{idp: fakeidp.Config{}}) // no auto-approve: the login page
	connectURL := e.MustSession("u1", "")

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
	err = chromedp.Do(browserCtx, connectAsAlice...)
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

// TestBrowserConnectFlowLoginElsewhere runs the flow against a provider
// whose authorization endpoint sends the browser on to a login page on
// another origin (fakeidp's SeparateLoginOrigin, as Ory Hydra does with its
// login app). Chromium applies the connect page's form-action to every
// redirect that follows the Connect form, so this only works because the
// form's answer is a page that goes on to the provider, not a redirect.
func TestBrowserConnectFlowLoginElsewhere(t *testing.T) {
	browserCtx := browsertest.MustStart(t, 30*time.Second)
	e := MustStartEnv(t, envOptions{idp: fakeidp.Config{SeparateLoginOrigin: true}})
	connectURL := e.MustSession("u1", "")
	ctx, cancel := context.WithTimeout(browserCtx, 15*time.Second)
	defer cancel()
	// fakeidp's login page is on its second origin.
	err := chromedp.Do(ctx, chromedp.Navigate(connectURL))
	if err == nil {
		err = chromedp.Do(ctx, connectAsAlice...)
	}
	if err != nil {
		loc, _ := chromedp.Run(browserCtx, chromedp.Location())
		t.Fatalf("browser: %v (stopped at %s)\nserver log:\n%s", err, loc, e.logs.String())
	}
	if l, err := e.store.GetLink(context.Background(), "u1", "demo"); err != nil || l.AccountLogin != "alice" {
		t.Fatalf("link = %+v, %v", l, err)
	}
}
