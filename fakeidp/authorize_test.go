package fakeidp_test

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/fakeidp"
)

const (
	testRedirect = "http://127.0.0.1:9999/callback"
	testVerifier = "dBjftJeZ4CVP-mJ92K9.1DJ~wrJI5Qx_Twf0ZNKQGpo.abc"
)

func challenge(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorizeURL builds an authorization request; extra overrides or, with
// an empty value, removes parameters.
func authorizeURL(s *fakeidp.Server, extra url.Values) string {
	v := url.Values{
		"response_type":         {"code"},
		"client_id":             {fakeidp.DefaultClientID},
		"redirect_uri":          {testRedirect},
		"scope":                 {"read"},
		"state":                 {"st-123"},
		"code_challenge":        {challenge(testVerifier)},
		"code_challenge_method": {"S256"},
	}
	for k, vals := range extra {
		if vals[0] == "" {
			v.Del(k)
		} else {
			v[k] = vals
		}
	}
	return s.Endpoints().Authorize + "?" + v.Encode()
}

// MustAuthorize drives the login page like a browser: GET the page, post
// its form as user, and return the redirect back to the client.
func MustAuthorize(tb testing.TB, s *fakeidp.Server, authURL, user string) *url.URL {
	tb.Helper()
	page := MustGet(tb, s, authURL)
	wantStatus(tb, page, http.StatusOK)
	form := formFields(page.Body)
	form.Set("login", user)
	form.Set("action", "approve")
	return location(tb, MustPost(tb, s, fakeidp.PathAuthorize, form))
}

// exchange redeems a code with the default client.
func exchange(tb testing.TB, s *fakeidp.Server, code, verifier, redirect string) Resp {
	tb.Helper()
	v := url.Values{"grant_type": {"authorization_code"}, "code": {code}}
	if verifier != "" {
		v.Set("code_verifier", verifier)
	}
	if redirect != "" {
		v.Set("redirect_uri", redirect)
	}
	return MustPost(tb, s, fakeidp.PathToken, v, defaultAuth)
}

func TestCodeFlowThroughLoginPage(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{})
	page := MustGet(t, s, authorizeURL(s, nil))
	wantStatus(t, page, http.StatusOK)
	for _, want := range []string{`<form method="post"`, `name="login"`, `name="username"`, `value="approve"`, "alice", "bob"} {
		if !strings.Contains(page.Body, want) {
			t.Fatalf("login page lacks %q:\n%s", want, page.Body)
		}
	}
	back := MustAuthorize(t, s, authorizeURL(s, nil), "bob")
	if got := back.Scheme + "://" + back.Host + back.Path; got != testRedirect {
		t.Fatalf("redirected to %s", got)
	}
	q := back.Query()
	if q.Get("state") != "st-123" || !strings.HasPrefix(q.Get("code"), fakeidp.PrefixCode) {
		t.Fatalf("redirect query: %v", q)
	}
	r := exchange(t, s, q.Get("code"), testVerifier, testRedirect)
	wantStatus(t, r, http.StatusOK)
	ui := Userinfo(t, s, r.Str("access_token"))
	wantStatus(t, ui, http.StatusOK)
	if ui.Str("login") != "bob" || ui.Str("id") != "1002" || ui.Str("email") != "bob@example.com" {
		t.Fatalf("userinfo: %s", ui.Body)
	}
	// The code is single use; a replay revokes what it granted (RFC 6749 §4.1.2).
	wantError(t, exchange(t, s, q.Get("code"), testVerifier, testRedirect), http.StatusBadRequest, "invalid_grant")
	wantStatus(t, Userinfo(t, s, r.Str("access_token")), http.StatusUnauthorized)
	st := s.Stats()
	if st.Authorizations != 1 || st.CodeExchanges != 1 || st.FamiliesRevoked != 1 || st.Requests["authorize"] != 3 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestLoginPageTypedUsernameCreatesUser(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{})
	page := MustGet(t, s, authorizeURL(s, nil))
	form := formFields(page.Body)
	form.Set("login", "alice")
	form.Set("username", "dave")
	form.Set("action", "approve")
	back := location(t, MustPost(t, s, fakeidp.PathAuthorize, form))
	r := exchange(t, s, back.Query().Get("code"), testVerifier, testRedirect)
	if ui := Userinfo(t, s, r.Str("access_token")); ui.Str("login") != "dave" || ui.Str("email") != "dave@example.com" {
		t.Fatalf("userinfo: %s", ui.Body)
	}
	// No user at all: the page again, with a message.
	form.Del("username")
	form.Del("login")
	wantStatus(t, MustPost(t, s, fakeidp.PathAuthorize, form), http.StatusBadRequest)
}

func TestLoginPageDeny(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{})
	form := formFields(MustGet(t, s, authorizeURL(s, nil)).Body)
	form.Set("action", "deny")
	q := location(t, MustPost(t, s, fakeidp.PathAuthorize, form)).Query()
	if q.Get("error") != "access_denied" || q.Get("state") != "st-123" || q.Get("code") != "" {
		t.Fatalf("deny redirect: %v", q)
	}
}

func TestAutoApprove(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{AutoApprove: "carol"})
	q := location(t, MustGet(t, s, authorizeURL(s, nil))).Query()
	r := exchange(t, s, q.Get("code"), testVerifier, testRedirect)
	if ui := Userinfo(t, s, r.Str("access_token")); ui.Str("login") != "carol" {
		t.Fatalf("userinfo: %s", ui.Body)
	}
	if _, err := fakeidp.New(fakeidp.Config{AutoApprove: "nobody"}); err == nil {
		t.Fatal("New accepted an auto-approve user that does not exist")
	}
}

func TestPKCE(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{AutoApprove: "alice", RequirePKCE: true})
	code := func() string {
		return location(t, MustGet(t, s, authorizeURL(s, nil))).Query().Get("code")
	}
	// Wrong, missing and malformed verifiers.
	wantError(t, exchange(t, s, code(), strings.Repeat("x", 43), testRedirect), http.StatusBadRequest, "invalid_grant")
	wantError(t, exchange(t, s, code(), "", testRedirect), http.StatusBadRequest, "invalid_grant")
	wantError(t, exchange(t, s, code(), "short", testRedirect), http.StatusBadRequest, "invalid_grant")
	// A failed verification does not use the code up.
	c := code()
	wantError(t, exchange(t, s, c, strings.Repeat("y", 43), testRedirect), http.StatusBadRequest, "invalid_grant")
	wantStatus(t, exchange(t, s, c, testVerifier, testRedirect), http.StatusOK)

	// Required: no challenge is refused at the authorization endpoint.
	q := location(t, MustGet(t, s, authorizeURL(s, url.Values{"code_challenge": {""}, "code_challenge_method": {""}}))).Query()
	if q.Get("error") != "invalid_request" || q.Get("state") != "st-123" {
		t.Fatalf("no challenge with RequirePKCE: %v", q)
	}
	// Only S256.
	q = location(t, MustGet(t, s, authorizeURL(s, url.Values{"code_challenge_method": {"plain"}}))).Query()
	if q.Get("error") != "invalid_request" {
		t.Fatalf("plain method: %v", q)
	}
}

func TestPKCEOptional(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{AutoApprove: "alice"})
	q := location(t, MustGet(t, s, authorizeURL(s, url.Values{"code_challenge": {""}, "code_challenge_method": {""}}))).Query()
	// RFC 9700 §2.1.1: a verifier without a challenge is rejected.
	wantError(t, exchange(t, s, q.Get("code"), testVerifier, testRedirect), http.StatusBadRequest, "invalid_grant")
	q = location(t, MustGet(t, s, authorizeURL(s, url.Values{"code_challenge": {""}, "code_challenge_method": {""}}))).Query()
	wantStatus(t, exchange(t, s, q.Get("code"), "", testRedirect), http.StatusOK)
}

func TestRedirectURIs(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{AutoApprove: "alice", RedirectURIs: []string{"https://app.example.com/cb"}})
	// Not registered: an error page, never a redirect (RFC 6749 §4.1.2.1).
	for _, bad := range []string{"https://app.example.com/cb/", "https://app.example.com/cb?x=1", "https://evil.example.com/cb", testRedirect} {
		r := MustGet(t, s, authorizeURL(s, url.Values{"redirect_uri": {bad}}))
		wantStatus(t, r, http.StatusBadRequest)
		if r.Header.Get("Location") != "" {
			t.Fatalf("redirected to an unregistered URI %s", bad)
		}
	}
	// Exact match works; omitted means the one registered URI.
	back := location(t, MustGet(t, s, authorizeURL(s, url.Values{"redirect_uri": {"https://app.example.com/cb"}})))
	if back.Host != "app.example.com" {
		t.Fatalf("redirect: %v", back)
	}
	// The token request must repeat the redirect_uri it was given.
	wantError(t, exchange(t, s, back.Query().Get("code"), testVerifier, "https://app.example.com/other"), http.StatusBadRequest, "invalid_grant")
	wantStatus(t, exchange(t, s, back.Query().Get("code"), testVerifier, "https://app.example.com/cb"), http.StatusOK)
	back = location(t, MustGet(t, s, authorizeURL(s, url.Values{"redirect_uri": {""}})))
	wantStatus(t, exchange(t, s, back.Query().Get("code"), testVerifier, ""), http.StatusOK)

	// Without registered URIs any loopback URI is fine, nothing else.
	s2 := MustStart(t, fakeidp.Config{AutoApprove: "alice"})
	for _, ok := range []string{"http://127.0.0.1:1234/cb", "http://localhost/cb", "http://[::1]:8080/x?y=1"} {
		back := location(t, MustGet(t, s2, authorizeURL(s2, url.Values{"redirect_uri": {ok}})))
		if back.Query().Get("code") == "" {
			t.Fatalf("%s: no code", ok)
		}
	}
	for _, bad := range []string{"https://app.example.com/cb", "http://127.0.0.1/cb#frag", "myapp://cb", ""} {
		wantStatus(t, MustGet(t, s2, authorizeURL(s2, url.Values{"redirect_uri": {bad}})), http.StatusBadRequest)
	}
}

func TestAuthorizeRequestErrors(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{AutoApprove: "alice"})
	wantStatus(t, MustGet(t, s, authorizeURL(s, url.Values{"client_id": {"other"}})), http.StatusBadRequest)
	wantStatus(t, MustGet(t, s, authorizeURL(s, url.Values{"client_id": {""}})), http.StatusBadRequest)
	q := location(t, MustGet(t, s, authorizeURL(s, url.Values{"response_type": {"token"}}))).Query()
	if q.Get("error") != "unsupported_response_type" {
		t.Fatalf("implicit grant: %v", q)
	}
	// A redirect URI with its own query keeps it.
	back := location(t, MustGet(t, s, authorizeURL(s, url.Values{"redirect_uri": {"http://127.0.0.1:1/cb?keep=1"}})))
	if back.Query().Get("keep") != "1" || back.Query().Get("code") == "" {
		t.Fatalf("redirect: %v", back)
	}
}

func TestCodeExpires(t *testing.T) {
	t.Parallel()
	clk := NewClock()
	s := MustStart(t, fakeidp.Config{AutoApprove: "alice", Now: clk.Now})
	code := location(t, MustGet(t, s, authorizeURL(s, nil))).Query().Get("code")
	clk.Advance(fakeidp.DefaultCodeTTL + time.Second)
	wantError(t, exchange(t, s, code, testVerifier, testRedirect), http.StatusBadRequest, "invalid_grant")
}
