package fakeidp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/browsertest"
	"golang.org/x/oauth2"
)

// TestBrowserPages drives a real headless Chromium through the login page
// (picking a user from the list and clicking Approve) and the device
// verification page (typing the user code and a new username), then
// redeems the results with x/oauth2. It proves what only a browser can:
// the forms submit what the server expects.
func TestBrowserPages(t *testing.T) {
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
	browser := browsertest.MustStart(t, 30*time.Second)

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
