package httpapi_test

import (
	"context"
	"html"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apiv1"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/httpapi/httpapitest"
)

var leaveRe = regexp.MustCompile(`<meta http-equiv="refresh" content="0; url=([^"]+)">`)

var formRe = regexp.MustCompile(`<form method="post" action="([^"]+)">\s*<input type="hidden" name="csrf" value="([^"]+)">`)

// The whole story across the API and the browser pages: the provider
// revokes the grant, the token endpoint answers reauth_required with a
// connect URL, the user's browser runs the code flow there (PKCE, state,
// fakeidp approving as alice), and the token endpoint hands out the new
// token.
func TestReauthThenConnectViaCodeFlow(t *testing.T) {
	env := MustEnv(t, httpapitest.Options{
		IDP: fakeidp.Config{AutoApprove: "alice", RequirePKCE: true},
	})
	issued := env.MustLink(t, "alice", demo, "alice")
	MustBreakLink(t, env, issued)
	key := env.MustKey(t, "platform", platform, nil, nil)
	tokenPath := path("users", "alice", "providers", demo, "token")

	resp, body := env.Do(t, "GET", tokenPath, key, "")
	p := MustProblem(t, resp, body, http.StatusConflict, "reauth_required")

	// The user's browser: cookies, redirects followed (all on loopback).
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, body = httpapitest.Do(t, browser, "GET", p.ConnectURL, "", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("connect page: %d %s", resp.StatusCode, body)
	}
	m := formRe.FindSubmatch(body)
	if m == nil {
		t.Fatalf("no Connect form on the page: %s", body)
	}
	action, csrf := html.UnescapeString(string(m[1])), html.UnescapeString(string(m[2]))
	if !strings.HasSuffix(action, "/start/"+demo) {
		t.Fatalf("form action %q", action)
	}
	form := url.Values{"csrf": {csrf}}.Encode()
	resp, body = httpapitest.Do(t, browser, "POST", env.URL+action, "", form, "Content-Type", "application/x-www-form-urlencoded")
	// The page that leaves for the provider (a browser follows its meta
	// refresh), then the provider's redirects back.
	leave := leaveRe.FindSubmatch(body)
	if resp.StatusCode != http.StatusOK || leave == nil {
		t.Fatalf("after Connect: %d %s", resp.StatusCode, body)
	}
	resp, body = httpapitest.Do(t, browser, "GET", html.UnescapeString(string(leave[1])), "", "")
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Host != strings.TrimPrefix(env.URL, "http://") {
		t.Fatalf("after Connect and the provider's redirect: %d at %s: %s", resp.StatusCode, resp.Request.URL.Path, body)
	}

	l, err := env.Store.GetLink(context.Background(), "alice", demo)
	if err != nil || l.State != tokenbroker.LinkActive || l.AccountLogin != "alice" {
		t.Fatalf("link after the code flow: %+v %v", l, err)
	}
	resp, body = env.Do(t, "GET", tokenPath, key, "")
	var tok apiv1.Token
	MustDecode(t, resp, body, http.StatusOK, &tok)
	env.Logs.AddSecret(tok.AccessToken)
	if tok.AccessToken == issued.AccessToken {
		t.Fatal("the old, revoked token was handed out")
	}
	if n := env.IDP.Stats().CodeExchanges; n != 1 {
		t.Errorf("code exchanges %d, want 1", n)
	}
}
