package fakeidp_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/tokenbroker/tokenbroker/fakeidp"
)

func TestClientAuthModes(t *testing.T) {
	t.Parallel()
	const id, secret = fakeidp.DefaultClientID, fakeidp.DefaultClientSecret
	basic := func(id, secret string) func(url.Values) reqOpt {
		return func(url.Values) reqOpt { return withBasic(id, secret) }
	}
	form := func(id, secret string) func(url.Values) reqOpt {
		return func(v url.Values) reqOpt {
			v.Set("client_id", id)
			v.Set("client_secret", secret)
			return func(*http.Request) {}
		}
	}
	both := func(v url.Values) reqOpt {
		v.Set("client_secret", secret)
		return withBasic(id, secret)
	}
	idOnly := func(v url.Values) reqOpt {
		v.Set("client_id", id)
		return func(*http.Request) {}
	}
	for _, tc := range []struct {
		name   string
		mode   fakeidp.ClientAuthMode
		auth   func(url.Values) reqOpt
		status int
		code   string
	}{
		{"both/basic", fakeidp.ClientAuthBoth, basic(id, secret), 200, ""},
		{"both/form", fakeidp.ClientAuthBoth, form(id, secret), 200, ""},
		{"both/basic wrong secret", fakeidp.ClientAuthBoth, basic(id, "nope"), 401, "invalid_client"},
		{"both/unknown client", fakeidp.ClientAuthBoth, form("other", secret), 401, "invalid_client"},
		{"both/two methods", fakeidp.ClientAuthBoth, both, 400, "invalid_request"},
		{"both/no secret", fakeidp.ClientAuthBoth, idOnly, 401, "invalid_client"},
		{"basic/basic", fakeidp.ClientAuthBasic, basic(id, secret), 200, ""},
		{"basic/form", fakeidp.ClientAuthBasic, form(id, secret), 401, "invalid_client"},
		{"form/form", fakeidp.ClientAuthForm, form(id, secret), 200, ""},
		{"form/basic", fakeidp.ClientAuthForm, basic(id, secret), 401, "invalid_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := MustStart(t, fakeidp.Config{ClientAuth: tc.mode})
			tok := MustIssue(t, s, "alice")
			v := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}
			opt := tc.auth(v)
			r := MustPost(t, s, fakeidp.PathToken, v, opt)
			wantStatus(t, r, tc.status)
			if tc.code != "" {
				wantError(t, r, tc.status, tc.code)
			}
			if r.Status == 401 && strings.Contains(tc.name, "/basic") != (r.Header.Get("WWW-Authenticate") != "") {
				t.Errorf("WWW-Authenticate = %q after a Basic attempt: %v", r.Header.Get("WWW-Authenticate"), strings.Contains(tc.name, "/basic"))
			}
		})
	}
}

func TestPublicClient(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{PublicClient: true})
	tok := MustIssue(t, s, "alice")
	r := MustPost(t, s, fakeidp.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken},
		"client_id": {fakeidp.DefaultClientID}})
	wantStatus(t, r, http.StatusOK)
	wantError(t, MustPost(t, s, fakeidp.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.Str("refresh_token")},
		"client_id": {"other"}}), http.StatusUnauthorized, "invalid_client")
}

func TestTokenEndpointRequestErrors(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{})
	wantError(t, MustPost(t, s, fakeidp.PathToken, url.Values{"grant_type": {"password"}}, defaultAuth), 400, "unsupported_grant_type")
	if st := s.Stats(); st.TokenRequests["other"] != 1 || len(st.TokenRequests) != 1 {
		t.Fatalf("token requests: %v", st.TokenRequests)
	}
	wantError(t, MustPost(t, s, fakeidp.PathToken, url.Values{}, defaultAuth), 400, "invalid_request")
	wantError(t, MustPost(t, s, fakeidp.PathToken, url.Values{"grant_type": {"refresh_token"}}, defaultAuth), 400, "invalid_request")
	r := MustPost(t, s, fakeidp.PathToken+"?x=1", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"a"}}, defaultAuth,
		withHeader("Content-Type", "application/json"))
	wantError(t, r, 400, "invalid_request")
	wantStatus(t, MustGet(t, s, fakeidp.PathToken), http.StatusMethodNotAllowed)
}

func TestUserinfo(t *testing.T) {
	t.Parallel()
	clk := NewClock()
	s := MustStart(t, fakeidp.Config{Now: clk.Now, AccessTokenTTL: time.Second})
	tok := MustIssue(t, s, "carol")
	ui := Userinfo(t, s, tok.AccessToken)
	wantStatus(t, ui, http.StatusOK)
	if ui.Str("id") != "1003" || ui.Str("login") != "carol" || ui.Str("email") != "carol@example.com" || ui.Str("sub") != "1003" {
		t.Fatalf("userinfo: %s", ui.Body)
	}
	// GitHub's path and "token" scheme work too.
	wantStatus(t, MustGet(t, s, fakeidp.PathGitHubUser, withHeader("Authorization", "token "+tok.AccessToken)), http.StatusOK)
	// Missing, unknown and expired (by the injected clock) tokens.
	r := MustGet(t, s, fakeidp.PathUserinfo)
	wantStatus(t, r, http.StatusUnauthorized)
	if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("WWW-Authenticate = %q", r.Header.Get("WWW-Authenticate"))
	}
	wantError(t, Userinfo(t, s, "fakeidp_at_nope"), http.StatusUnauthorized, "invalid_token")
	clk.Advance(time.Second)
	wantError(t, Userinfo(t, s, tok.AccessToken), http.StatusUnauthorized, "invalid_token")

	// ExpireAccessTokensOf does the same without a clock.
	tok = MustIssue(t, s, "alice")
	if !s.ExpireAccessTokensOf(tok.RefreshToken) {
		t.Fatal("ExpireAccessTokensOf: unknown token")
	}
	wantStatus(t, Userinfo(t, s, tok.AccessToken), http.StatusUnauthorized)

	// GitHub's numeric ids.
	g := MustStart(t, fakeidp.Config{Flavor: fakeidp.FlavorGitHub})
	ui = Userinfo(t, g, MustIssue(t, g, "bob", "repo", "user").AccessToken)
	if ui.JSON["id"] != 1002.0 || ui.Header.Get("X-OAuth-Scopes") != "repo, user" {
		t.Fatalf("GitHub userinfo: %s %v", ui.Body, ui.Header)
	}
}

func TestRevocation(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{})
	revoke := func(tok string) Resp {
		return MustPost(t, s, fakeidp.PathRevoke, url.Values{"token": {tok}}, defaultAuth)
	}
	// Revoking a refresh token revokes the family.
	a := MustIssue(t, s, "alice")
	wantStatus(t, revoke(a.RefreshToken), http.StatusOK)
	wantStatus(t, Userinfo(t, s, a.AccessToken), http.StatusUnauthorized)
	wantError(t, Refresh(t, s, a.RefreshToken), http.StatusBadRequest, "invalid_grant")
	// Revoking an access token revokes just it.
	b := MustIssue(t, s, "bob")
	wantStatus(t, revoke(b.AccessToken), http.StatusOK)
	wantStatus(t, Userinfo(t, s, b.AccessToken), http.StatusUnauthorized)
	r := Refresh(t, s, b.RefreshToken)
	wantStatus(t, r, http.StatusOK)
	wantStatus(t, Userinfo(t, s, r.Str("access_token")), http.StatusOK)
	// Unknown tokens: 200 (RFC 7009 §2.2); bad client: 401.
	wantStatus(t, revoke("whatever"), http.StatusOK)
	wantError(t, MustPost(t, s, fakeidp.PathRevoke, url.Values{"token": {"x"}}, withBasic("x", "y")), http.StatusUnauthorized, "invalid_client")
	st := s.Stats()
	if st.Revocations != 3 || st.FamiliesRevoked != 1 || st.Families[a.Family].RevokedReason != "revocation" {
		t.Fatalf("stats: %+v", st)
	}
}

func TestRevokeFamilyOf(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{})
	tok := MustIssue(t, s, "alice")
	if !s.RevokeFamilyOf(tok.AccessToken) || s.RevokeFamilyOf("unknown") {
		t.Fatal("RevokeFamilyOf: wrong result")
	}
	wantError(t, Refresh(t, s, tok.RefreshToken), http.StatusBadRequest, "invalid_grant")
	fam, _ := s.FamilyOf(tok.RefreshToken)
	if !fam.Revoked || fam.RevokedReason != "admin" {
		t.Fatalf("family: %+v", fam)
	}
	// Through HTTP.
	tok = MustIssue(t, s, "alice")
	r := MustPost(t, s, fakeidp.PathAdminRevoke, url.Values{"token": {tok.RefreshToken}})
	if r.JSON["revoked"] != true {
		t.Fatalf("admin revoke: %s", r.Body)
	}
	wantStatus(t, Userinfo(t, s, tok.AccessToken), http.StatusUnauthorized)
}

func TestStatsEndpointAndReset(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{})
	r := MustPost(t, s, fakeidp.PathAdminIssue, url.Values{"user": {"zed"}, "scope": {"a b"}})
	wantStatus(t, r, http.StatusOK)
	if !strings.HasPrefix(r.Str("refresh_token"), fakeidp.PrefixRefreshToken) || r.Str("scope") != "a b" || r.Str("family") == "" {
		t.Fatalf("admin issue: %s", r.Body)
	}
	wantStatus(t, Refresh(t, s, r.Str("refresh_token")), http.StatusOK)
	st := MustGet(t, s, fakeidp.PathStats)
	if st.JSON["refresh_calls"] != 1.0 || st.JSON["families"].(map[string]any)[r.Str("family")].(map[string]any)["generation"] != 2.0 {
		t.Fatalf("stats: %s", st.Body)
	}
	wantStatus(t, MustPost(t, s, fakeidp.PathStatsReset, nil), http.StatusNoContent)
	got := s.Stats()
	if got.RefreshCalls != 0 || got.Requests["token"] != 0 || got.Families[r.Str("family")].Generation != 2 {
		t.Fatalf("after reset: %+v", got)
	}
	if st := MustGet(t, s, fakeidp.PathStats+"?families=0"); st.JSON["families"] != nil {
		t.Fatalf("families=0: %s", st.Body)
	}
	wantStatus(t, MustGet(t, s, "/"), http.StatusOK)
	wantStatus(t, MustGet(t, s, fakeidp.PathDiscovery), http.StatusNotFound)
	wantStatus(t, MustGet(t, s, fakeidp.PathJWKS), http.StatusNotFound)
	md := MustGet(t, s, fakeidp.PathOAuthMetadata)
	if md.Str("token_endpoint") != s.Endpoints().Token {
		t.Fatalf("RFC 8414 metadata: %s", md.Body)
	}
}

func TestNewAsHandler(t *testing.T) {
	t.Parallel()
	s, err := fakeidp.New(fakeidp.Config{AutoApprove: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ts := httptest.NewServer(s)
	defer ts.Close()
	resp, err := noRedirects.Get(ts.URL + "/authorize?" + url.Values{"response_type": {"code"}, "client_id": {fakeidp.DefaultClientID},
		"redirect_uri": {testRedirect}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// Links are derived from the request's host.
	resp, err = http.PostForm(ts.URL+fakeidp.PathDeviceCode, url.Values{"client_id": {fakeidp.DefaultClientID}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf strings.Builder
	if _, err := io.Copy(&buf, resp.Body); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), ts.URL+fakeidp.PathDevice) {
		t.Fatalf("device answer without the request's host: %s", buf.String())
	}
}

func TestOIDC(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{OIDC: true, AutoApprove: "alice"})
	ctx := context.Background()
	// A generic OIDC client configures itself from discovery.
	provider, err := oidc.NewProvider(ctx, s.URL())
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	conf := s.OAuth2Config(testRedirect, oidc.ScopeOpenID, "email")
	if provider.Endpoint().TokenURL != conf.Endpoint.TokenURL {
		t.Fatalf("discovered token URL %q", provider.Endpoint().TokenURL)
	}
	authURL := conf.AuthCodeURL("st", oidc.Nonce("n-42"))
	back := location(t, MustGet(t, s, authURL))
	if back.Query().Get("iss") != s.URL() {
		t.Errorf("iss = %q (RFC 9207)", back.Query().Get("iss"))
	}
	tok, err := conf.Exchange(ctx, back.Query().Get("code"))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: fakeidp.DefaultClientID}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("verify id_token: %v", err)
	}
	var claims struct {
		Email    string `json:"email"`
		Username string `json:"preferred_username"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if idt.Subject != "1001" || idt.Nonce != "n-42" || claims.Email != "alice@example.com" || claims.Username != "alice" {
		t.Fatalf("id_token: sub %q nonce %q claims %+v", idt.Subject, idt.Nonce, claims)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Fatalf("at_hash: %v", err)
	}
	// Refreshes carry a fresh id_token; userinfo works through go-oidc.
	tok.Expiry = time.Now().Add(-time.Minute)
	fresh, err := conf.TokenSource(ctx, tok).Token()
	if err != nil {
		t.Fatal(err)
	}
	if raw, _ := fresh.Extra("id_token").(string); raw == "" {
		t.Fatal("refresh answer without id_token")
	}
	ui, err := provider.UserInfo(ctx, conf.TokenSource(ctx, fresh))
	if err != nil || ui.Email != "alice@example.com" || ui.Subject != "1001" {
		t.Fatalf("userinfo: %+v %v", ui, err)
	}
	// Without openid in the scope there is no id_token.
	plain := MustIssue(t, s, "bob", "email")
	if plain.IDToken != "" {
		t.Fatal("id_token without openid scope")
	}
	if tk := MustIssue(t, s, "bob", "openid"); tk.IDToken == "" {
		t.Fatal("IssueToken with openid: no id_token")
	}
}

func TestFailingRandomness(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{Rand: iotest.ErrReader(errors.New("entropy gone")), Faults: fakeidp.Faults{P503: 0.5}})
	if _, err := s.IssueToken("alice"); err == nil {
		t.Fatal("IssueToken without randomness succeeded")
	}
	wantError(t, MustPost(t, s, fakeidp.PathDeviceCode, url.Values{"client_id": {fakeidp.DefaultClientID}}), 500, "server_error")
	// Fault decisions without randomness inject nothing.
	wantError(t, Refresh(t, s, "x"), http.StatusBadRequest, "invalid_grant")
}

func TestBaseURLAndConfig(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{BaseURL: "https://idp.example.com/", Users: []fakeidp.User{{ID: "7", Login: "zoe"}}})
	if s.URL() != "https://idp.example.com" || s.Endpoints().Token != "https://idp.example.com/token" {
		t.Fatalf("URL %q, endpoints %+v", s.URL(), s.Endpoints())
	}
	c := s.Config()
	if c.ClientID != fakeidp.DefaultClientID || len(c.Users) != 1 || c.AccessTokenTTL != time.Hour {
		t.Fatalf("Config: %+v", c)
	}
	// Users typed on the login page show up in Config.
	MustIssue(t, s, "newbie")
	if c := s.Config(); len(c.Users) != 2 || c.Users[1].Login != "newbie" {
		t.Fatalf("users: %+v", c.Users)
	}
}
