package provider

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenbroker/tokenbroker"
)

const (
	testClientID = "client-123"
	testSecret   = "s3cr3t-client-secret-value"
	oldRefresh   = "old-refresh-token-that-must-never-leak-0123456789"
	testAccess   = "access-token-that-must-never-leak-0123456789abcdef"
)

// errCase is a recorded error answer to a refresh and its classification.
type errCase struct {
	fixture      string
	status       int
	code         string
	permanent    bool
	descContains string
	retryAfter   time.Duration
}

// kindCase describes one kind against a replay server.
type kindCase struct {
	kind      string
	config    func(base string) ProviderConfig
	tokenPath string
	style     string // "header" or "params"

	refreshOK    string
	wantAccess   string
	wantRefresh  string // "" means the old refresh token is kept
	wantLifetime time.Duration
	wantScope    bool // the refresh request carries scope (Entra ID)
	wantExtra    map[string]string
	errors       []errCase

	validateMethod, validatePath, validateFixture string
	wantAccount                                   tokenbroker.Account

	revokeMethod, revokePath, revokeFixture string // "" path: not implemented
}

// mustStart starts a replay server (closed at cleanup) and a provider of
// the case's kind speaking to it.
func (kc kindCase) mustStart(t *testing.T) (*replay, *oauthProvider) {
	t.Helper()
	srv := MustReplay(t)
	return srv, MustNew(t, kc.config(srv.URL), srv.Client())
}

func kindCases() []kindCase {
	base := func(kind string, f func(pc *ProviderConfig, base string)) func(string) ProviderConfig {
		return func(b string) ProviderConfig {
			pc := ProviderConfig{ID: "p-" + kind, Kind: kind, ClientID: testClientID, ClientSecret: testSecret}
			f(&pc, b)
			return pc
		}
	}
	return []kindCase{
		{
			kind: KindGitHub,
			config: base(KindGitHub, func(pc *ProviderConfig, b string) {
				pc.BaseURL = b
				pc.ExtraTokenKeys = []string{"refresh_token_expires_in"}
			}),
			tokenPath: "/login/oauth/access_token", style: "params",
			refreshOK:    "github/refresh_ok",
			wantAccess:   "ghu_16C7e42F292c6912E7710c838347Ae178B4a",
			wantRefresh:  "ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246c34E1ccbF66C46812d16D5B1A9Dc86A1498",
			wantLifetime: 8 * time.Hour,
			wantExtra:    map[string]string{"refresh_token_expires_in": "15811200"},
			errors: []errCase{
				{fixture: "github/bad_refresh_token", status: 200, code: "bad_refresh_token", permanent: true, descContains: "incorrect or expired"},
				{fixture: "github/incorrect_client_credentials", status: 200, code: "incorrect_client_credentials", permanent: true},
				{fixture: "oauth2/server_error", status: 500, code: "server_error"},
			},
			validateMethod: "GET", validatePath: "/api/v3/user", validateFixture: "github/user",
			wantAccount:  tokenbroker.Account{ID: "583231", Login: "octocat", Email: "octocat@github.com"},
			revokeMethod: "DELETE", revokePath: "/api/v3/applications/" + testClientID + "/grant", revokeFixture: "github/revoke_ok",
		},
		{
			kind:      KindGitLab,
			config:    base(KindGitLab, func(pc *ProviderConfig, b string) { pc.BaseURL = b + "/" }),
			tokenPath: "/oauth/token", style: "params",
			refreshOK:    "gitlab/refresh_ok",
			wantAccess:   "de6780bc506a0446309bd9362820ba8aed28aa506c71eedbe1c5c4f9dd350e54",
			wantRefresh:  "8257e65c97202ed1726cf9571600918f3bffb2544b26e00a61df9897668c33a1",
			wantLifetime: 2 * time.Hour,
			errors: []errCase{
				{fixture: "gitlab/invalid_grant", status: 400, code: "invalid_grant", permanent: true, descContains: "grant is invalid"},
				{fixture: "gitlab/invalid_client", status: 401, code: "invalid_client", permanent: true},
			},
			validateMethod: "GET", validatePath: "/api/v4/user", validateFixture: "gitlab/user",
			wantAccount:  tokenbroker.Account{ID: "1234567", Login: "jdoe", Email: "jdoe@example.com"},
			revokeMethod: "POST", revokePath: "/oauth/revoke", revokeFixture: "gitlab/revoke_ok",
		},
		{
			kind: KindBitbucket,
			config: base(KindBitbucket, func(pc *ProviderConfig, b string) {
				pc.AuthURL, pc.TokenURL, pc.ValidateURL = b+"/site/oauth2/authorize", b+"/site/oauth2/access_token", b+"/2.0/user"
			}),
			tokenPath: "/site/oauth2/access_token", style: "header",
			refreshOK:    "bitbucket/refresh_ok",
			wantAccess:   "EbGzOv5rFXb1yXnKz0qW3pLm9TjUcVdRa8sYhBnMkQiP4xZo2AeJfDgHtSwC6lN7",
			wantRefresh:  "QwErTyUiOpAsDfGhJk",
			wantLifetime: 2 * time.Hour,
			errors: []errCase{
				{fixture: "bitbucket/invalid_grant", status: 400, code: "invalid_grant", permanent: true, descContains: "Invalid refresh_token"},
			},
			validateMethod: "GET", validatePath: "/2.0/user", validateFixture: "bitbucket/user",
			wantAccount: tokenbroker.Account{ID: "{4a1b2c3d-5e6f-4a7b-8c9d-0e1f2a3b4c5d}", Login: "jdoe"},
		},
		{
			kind:      KindGitea,
			config:    base(KindGitea, func(pc *ProviderConfig, b string) { pc.BaseURL = b }),
			tokenPath: "/login/oauth/access_token", style: "params",
			refreshOK:    "gitea/refresh_ok",
			wantAccess:   "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJnbnQiOjEsInR0IjowLCJleHAiOjE3OTU4NjM2MDB9.c2ln",
			wantRefresh:  "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJnbnQiOjEsInR0IjoxLCJjbnQiOjJ9.c2lnbmF0dXJl",
			wantLifetime: time.Hour,
			errors: []errCase{
				{fixture: "gitea/token_already_used", status: 400, code: "unauthorized_client", permanent: true, descContains: "already used"},
			},
			validateMethod: "GET", validatePath: "/api/v1/user", validateFixture: "gitea/user",
			wantAccount: tokenbroker.Account{ID: "42", Login: "jdoe", Email: "jdoe@example.com"},
		},
		{
			kind:      KindForgejo,
			config:    base(KindForgejo, func(pc *ProviderConfig, b string) { pc.BaseURL = b }),
			tokenPath: "/login/oauth/access_token", style: "params",
			refreshOK:    "gitea/refresh_ok",
			wantAccess:   "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJnbnQiOjEsInR0IjowLCJleHAiOjE3OTU4NjM2MDB9.c2ln",
			wantRefresh:  "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJnbnQiOjEsInR0IjoxLCJjbnQiOjJ9.c2lnbmF0dXJl",
			wantLifetime: time.Hour,
			errors: []errCase{
				{fixture: "gitea/token_already_used", status: 400, code: "unauthorized_client", permanent: true},
			},
			validateMethod: "GET", validatePath: "/api/v1/user", validateFixture: "gitea/user",
			wantAccount: tokenbroker.Account{ID: "42", Login: "jdoe", Email: "jdoe@example.com"},
		},
		{
			kind: KindMicrosoft,
			config: base(KindMicrosoft, func(pc *ProviderConfig, b string) {
				pc.BaseURL, pc.Tenant, pc.ValidateURL = b, "contoso.onmicrosoft.com", b+"/v1.0/me"
				pc.Scopes = []string{"openid", "User.Read"} // offline_access is added
			}),
			tokenPath: "/contoso.onmicrosoft.com/oauth2/v2.0/token", style: "params",
			refreshOK:    "microsoft/refresh_ok",
			wantAccess:   "eyJ0eXAiOiJKV1QiLCJub25jZSI6IkFRQUJBQUFBQUFBR1Y.eyJhdWQiOiIwMDAwMDAwMy0wMDAwLTAwMDAtYzAwMC0wMDAwMDAwMDAwMDAifQ.c2lnbmF0dXJl",
			wantRefresh:  "1.AXkAaBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP",
			wantLifetime: 4385 * time.Second,
			wantScope:    true,
			errors: []errCase{
				{fixture: "microsoft/invalid_grant_70008", status: 400, code: "invalid_grant", permanent: true, descContains: "AADSTS70008: The provided authorization code or refresh token has expired due to inactivity"},
				{fixture: "microsoft/invalid_grant_700082", status: 400, code: "invalid_grant", permanent: true, descContains: "AADSTS700082"},
				{fixture: "microsoft/throttled", status: 429, code: "temporarily_unavailable", retryAfter: 30 * time.Second},
			},
			validateMethod: "GET", validatePath: "/v1.0/me", validateFixture: "microsoft/me",
			wantAccount: tokenbroker.Account{ID: "87d349ed-44d7-43e1-9a83-5f2406dee5bd", Login: "AdeleV@contoso.com", Email: "AdeleV@contoso.com"},
		},
		{
			kind: KindGoogle,
			config: base(KindGoogle, func(pc *ProviderConfig, b string) {
				pc.AuthURL, pc.TokenURL, pc.ValidateURL, pc.RevokeURL = b+"/o/oauth2/v2/auth", b+"/token", b+"/v1/userinfo", b+"/revoke"
			}),
			tokenPath: "/token", style: "params",
			refreshOK:    "google/refresh_ok",
			wantAccess:   "ya29.a0AfB_byC1d2E3f4G5h6I7j8K9l0MnOpQrStUvWxYz0123456789",
			wantLifetime: 3599 * time.Second,
			errors: []errCase{
				{fixture: "google/invalid_grant", status: 400, code: "invalid_grant", permanent: true, descContains: "Token has been expired or revoked."},
				{fixture: "google/invalid_client", status: 401, code: "invalid_client", permanent: true},
				{fixture: "google/backend_error", status: 503},
			},
			validateMethod: "GET", validatePath: "/v1/userinfo", validateFixture: "google/userinfo",
			wantAccount:  tokenbroker.Account{ID: "110169484474386276334", Login: "jane@example.com", Email: "jane@example.com"},
			revokeMethod: "POST", revokePath: "/revoke", revokeFixture: "google/revoke_ok",
		},
		{
			kind: KindSlack,
			config: base(KindSlack, func(pc *ProviderConfig, b string) {
				pc.AuthURL, pc.TokenURL, pc.ValidateURL, pc.RevokeURL = b+"/oauth/v2/authorize", b+"/api/oauth.v2.access", b+"/api/auth.test", b+"/api/auth.revoke"
			}),
			tokenPath: "/api/oauth.v2.access", style: "params",
			refreshOK:    "slack/refresh_ok",
			wantAccess:   "xoxe.xoxp-1-Mi0yLTE3NzE2NzUzNjQ5NC0xNzcxNjc1MzY0OTQtMTc3MTY3NTM2NDk0",
			wantRefresh:  "xoxe-1-My0xLTE3NzE2NzUzNjQ5NC0xNzcxNjc1MzY0OTQtMTc3MTY3NTM2NDk0",
			wantLifetime: 12 * time.Hour,
			errors: []errCase{
				{fixture: "slack/invalid_refresh_token", status: 200, code: "invalid_refresh_token", permanent: true},
				{fixture: "slack/ratelimited", status: 429, code: "ratelimited", retryAfter: 30 * time.Second},
			},
			validateMethod: "POST", validatePath: "/api/auth.test", validateFixture: "slack/auth_test",
			wantAccount:  tokenbroker.Account{ID: "U1234ABCD", Login: "jdoe"},
			revokeMethod: "POST", revokePath: "/api/auth.revoke", revokeFixture: "slack/revoke_ok",
		},
		{
			kind: KindOAuth2,
			config: base(KindOAuth2, func(pc *ProviderConfig, b string) {
				pc.AuthURL, pc.TokenURL, pc.ValidateURL, pc.RevokeURL = b+"/authorize", b+"/token", b+"/userinfo", b+"/revoke"
			}),
			tokenPath: "/token", style: "header",
			refreshOK:    "oauth2/refresh_ok",
			wantAccess:   "at-2f6b0c1d9e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c",
			wantRefresh:  "rt-9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b",
			wantLifetime: time.Hour,
			errors: []errCase{
				{fixture: "oauth2/invalid_request_reused", status: 400, code: "invalid_request", permanent: true, descContains: "already used"},
				{fixture: "oauth2/form_error", status: 200, code: "bad_refresh_token", permanent: true},
				{fixture: "oauth2/server_error", status: 500, code: "server_error"},
			},
			validateMethod: "GET", validatePath: "/userinfo", validateFixture: "oauth2/userinfo",
			wantAccount:  tokenbroker.Account{ID: "248289761001", Login: "jdoe", Email: "jdoe@example.com"},
			revokeMethod: "POST", revokePath: "/revoke", revokeFixture: "google/revoke_ok",
		},
	}
}

// checkClientAuth asserts the client authentication of a token request.
func checkClientAuth(t *testing.T, style string, q recorded) {
	t.Helper()
	switch style {
	case "header":
		if !q.HasBasic || q.BasicUser != testClientID || q.BasicPass != testSecret {
			t.Errorf("want HTTP Basic client authentication, got basic=%v user=%q", q.HasBasic, q.BasicUser)
		}
		if q.Form.Has("client_secret") {
			t.Errorf("client_secret sent in the form as well as in the header")
		}
	case "params":
		if q.HasBasic {
			t.Errorf("HTTP Basic sent, want form parameters")
		}
		if q.Form.Get("client_id") != testClientID || q.Form.Get("client_secret") != testSecret {
			t.Errorf("want client_id and client_secret form parameters, got client_id=%q secret set=%v", q.Form.Get("client_id"), q.Form.Has("client_secret"))
		}
	}
}

func TestKindRefresh(t *testing.T) {
	for _, kc := range kindCases() {
		t.Run(kc.kind, func(t *testing.T) {
			srv, p := kc.mustStart(t)
			srv.answer(t, "POST", kc.tokenPath, kc.refreshOK)

			tok, err := p.Refresh(context.Background(), oldRefresh)
			if err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			q := srv.only(t, "POST", kc.tokenPath)
			if q.Form.Get("grant_type") != "refresh_token" || q.Form.Get("refresh_token") != oldRefresh {
				t.Errorf("form = %v, want grant_type=refresh_token with the refresh token", q.Form)
			}
			checkClientAuth(t, kc.style, q)
			if q.Accept != "application/json" {
				t.Errorf("Accept = %q, want application/json", q.Accept)
			}
			if got := q.Form.Get("scope"); kc.wantScope != (got != "") || kc.wantScope && !strings.Contains(got, "offline_access") {
				t.Errorf("scope on refresh = %q, want it: %v (with offline_access)", got, kc.wantScope)
			}
			if tok.AccessToken != kc.wantAccess {
				t.Errorf("access token = %q, want %q", tok.AccessToken, kc.wantAccess)
			}
			wantRT := kc.wantRefresh
			if wantRT == "" {
				wantRT = oldRefresh
			}
			if tok.RefreshToken != wantRT {
				t.Errorf("refresh token = %q, want %q", tok.RefreshToken, wantRT)
			}
			if want := testNow.Add(kc.wantLifetime); !tok.Expiry.Equal(want) {
				t.Errorf("expiry = %v, want %v (injected clock + expires_in)", tok.Expiry, want)
			}
			for k, v := range kc.wantExtra {
				if tok.Extra[k] != v {
					t.Errorf("Extra[%s] = %q, want %q", k, tok.Extra[k], v)
				}
			}
			if kc.wantExtra == nil && len(tok.Extra) != 0 {
				t.Errorf("Extra = %v, want none (no extra_token_keys)", tok.Extra)
			}
		})
	}
}

func TestKindRefreshErrors(t *testing.T) {
	for _, kc := range kindCases() {
		for _, ec := range kc.errors {
			t.Run(kc.kind+"/"+ec.fixture, func(t *testing.T) {
				srv, p := kc.mustStart(t)
				srv.answer(t, "POST", kc.tokenPath, ec.fixture)

				tok, err := p.Refresh(context.Background(), oldRefresh)
				if err == nil {
					t.Fatalf("Refresh succeeded with %+v, want an error", tok)
				}
				var pe *tokenbroker.ProviderError
				if !errors.As(err, &pe) {
					t.Fatalf("error %T %v, want *tokenbroker.ProviderError", err, err)
				}
				if pe.ProviderID != p.ID() || pe.StatusCode != ec.status || pe.Code != ec.code || !pe.Transient() != ec.permanent {
					t.Errorf("got id=%s status=%d code=%q permanent=%v, want status=%d code=%q permanent=%v",
						pe.ProviderID, pe.StatusCode, pe.Code, !pe.Transient(), ec.status, ec.code, ec.permanent)
				}
				if !strings.Contains(pe.Description, ec.descContains) {
					t.Errorf("description %q does not contain %q", pe.Description, ec.descContains)
				}
				if pe.RetryAfter != ec.retryAfter {
					t.Errorf("RetryAfter = %v, want %v", pe.RetryAfter, ec.retryAfter)
				}
				for _, s := range []string{oldRefresh, testSecret} {
					if strings.Contains(err.Error(), s) || strings.Contains(pe.Reason(), s) {
						t.Errorf("error leaks a secret: %v", err)
					}
				}
				if n := len(srv.requests("POST", kc.tokenPath)); n != 1 {
					t.Errorf("%d token requests, want exactly 1 (never retried)", n)
				}
			})
		}
	}
}

// TestRefreshOneRequestOn401 proves that a rejected refresh reaches the
// token endpoint exactly once for every kind: the auth style is explicit.
// With x/oauth2's auto-detection the same refresh token is sent twice,
// which the last subtest demonstrates against the same server.
func TestRefreshOneRequestOn401(t *testing.T) {
	for _, kc := range kindCases() {
		t.Run(kc.kind, func(t *testing.T) {
			srv, p := kc.mustStart(t)
			srv.answer(t, "POST", kc.tokenPath, "oauth2/invalid_client")
			_, err := p.Refresh(context.Background(), oldRefresh)
			var pe *tokenbroker.ProviderError
			if !errors.As(err, &pe) || pe.Transient() || pe.StatusCode != 401 {
				t.Fatalf("err = %v, want a permanent 401 ProviderError", err)
			}
			if n := len(srv.requests("POST", kc.tokenPath)); n != 1 {
				t.Fatalf("%d token requests for one refresh, want 1", n)
			}
		})
	}
	t.Run("auto-detect sends twice", func(t *testing.T) {
		srv := MustReplay(t)
		srv.answer(t, "POST", "/token", "oauth2/invalid_client")
		cfg := &oauth2.Config{ClientID: testClientID, ClientSecret: testSecret,
			Endpoint: oauth2.Endpoint{TokenURL: srv.URL + "/token", AuthStyle: oauth2.AuthStyleAutoDetect}}
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, srv.Client())
		if _, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: oldRefresh}).Token(); err == nil {
			t.Fatal("refresh succeeded")
		}
		if n := len(srv.requests("POST", "/token")); n != 2 {
			t.Fatalf("auto-detection sent %d requests; this test documents that it sends 2", n)
		}
	})
}

func TestKindValidate(t *testing.T) {
	for _, kc := range kindCases() {
		t.Run(kc.kind, func(t *testing.T) {
			srv, p := kc.mustStart(t)
			srv.answer(t, kc.validateMethod, kc.validatePath, kc.validateFixture)
			acct, err := p.Validate(context.Background(), testAccess)
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if *acct != kc.wantAccount {
				t.Errorf("account = %+v, want %+v", *acct, kc.wantAccount)
			}
			reqs := srv.requests(kc.validateMethod, kc.validatePath)
			if len(reqs) != 1 || reqs[0].Auth != "Bearer "+testAccess {
				t.Errorf("want one request with the bearer token, got %d", len(reqs))
			}
		})
	}
}

func TestValidateFailures(t *testing.T) {
	gh := kindCases()[0]
	cases := []struct {
		fixture    string
		permanent  bool
		status     int
		retryAfter time.Duration
	}{
		{"github/user_rate_limited", false, 403, 10 * time.Minute},
		{"github/secondary_rate_limit", false, 403, time.Minute},
		{"github/user_bad_credentials", true, 401, 0},
		{"google/backend_error", false, 503, 0},
	}
	for _, c := range cases {
		t.Run(c.fixture, func(t *testing.T) {
			srv := MustReplay(t)
			p := MustNew(t, gh.config(srv.URL), srv.Client())
			srv.answer(t, "GET", gh.validatePath, c.fixture)
			_, err := p.Validate(context.Background(), testAccess)
			var pe *tokenbroker.ProviderError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a ProviderError", err)
			}
			if !pe.Transient() != c.permanent || pe.StatusCode != c.status || pe.RetryAfter != c.retryAfter {
				t.Errorf("got permanent=%v status=%d retry=%v, want %v %d %v", !pe.Transient(), pe.StatusCode, pe.RetryAfter, c.permanent, c.status, c.retryAfter)
			}
			if strings.Contains(err.Error(), testAccess) {
				t.Errorf("error leaks the access token: %v", err)
			}
		})
	}
	t.Run("slack ok:false", func(t *testing.T) {
		sl := kindCases()[7]
		srv := MustReplay(t)
		p := MustNew(t, sl.config(srv.URL), srv.Client())
		srv.answer(t, "POST", sl.validatePath, "slack/token_revoked")
		_, err := p.Validate(context.Background(), testAccess)
		var pe *tokenbroker.ProviderError
		if !errors.As(err, &pe) || pe.Transient() || pe.Code != "token_revoked" {
			t.Fatalf("err = %v, want permanent token_revoked", err)
		}
	})
}

func TestKindRevoke(t *testing.T) {
	tok := &tokenbroker.Token{AccessToken: testAccess, RefreshToken: oldRefresh}
	for _, kc := range kindCases() {
		t.Run(kc.kind, func(t *testing.T) {
			srv, p := kc.mustStart(t)
			if kc.revokePath == "" {
				err := p.Revoke(context.Background(), tok)
				if tokenbroker.ErrorCode(err) != tokenbroker.ENOTIMPLEMENTED {
					t.Fatalf("Revoke = %v, want ENOTIMPLEMENTED", err)
				}
				if p.Info().SupportsRevoke {
					t.Error("Info says SupportsRevoke")
				}
				return
			}
			if !p.Info().SupportsRevoke {
				t.Error("Info says !SupportsRevoke")
			}
			srv.answer(t, kc.revokeMethod, kc.revokePath, kc.revokeFixture)
			if err := p.Revoke(context.Background(), tok); err != nil {
				t.Fatalf("Revoke: %v", err)
			}
			q := srv.only(t, kc.revokeMethod, kc.revokePath)
			switch kc.kind {
			case KindGitHub:
				if q.BasicUser != testClientID || q.BasicPass != testSecret || !strings.Contains(q.Body, `"access_token":"`+testAccess+`"`) {
					t.Errorf("GitHub grant revocation: basic=%q body=%q", q.BasicUser, q.Body)
				}
			case KindSlack:
				if q.Auth != "Bearer "+testAccess {
					t.Errorf("Slack auth.revoke without the bearer token")
				}
			default: // RFC 7009
				if q.Form.Get("token") != oldRefresh || q.Form.Get("token_type_hint") != "refresh_token" {
					t.Errorf("RFC 7009 form = %v, want the refresh token with its hint", q.Form)
				}
				if kc.kind != KindGoogle {
					checkClientAuth(t, kc.style, q)
				}
			}
		})
	}
}

func TestRevokeFailure(t *testing.T) {
	kc := kindCases()[1] // gitlab
	srv := MustReplay(t)
	p := MustNew(t, kc.config(srv.URL), srv.Client())
	srv.answer(t, "POST", "/oauth/revoke", "gitlab/invalid_client")
	err := p.Revoke(context.Background(), &tokenbroker.Token{RefreshToken: oldRefresh})
	var pe *tokenbroker.ProviderError
	if !errors.As(err, &pe) || pe.StatusCode != 401 || pe.Code != "invalid_client" {
		t.Fatalf("err = %v, want the 401 invalid_client", err)
	}
}

func TestSlackExchangeAuthedUser(t *testing.T) {
	kc := kindCases()[7]
	srv := MustReplay(t)
	pc := kc.config(srv.URL)
	pc.Scopes = []string{"chat:write", "users:read"}
	p := MustNew(t, pc, srv.Client())
	srv.answer(t, "POST", kc.tokenPath, "slack/exchange_ok")
	tok, err := p.Exchange(context.Background(), "code-1", "verifier-0123456789012345678901234567890123", "http://127.0.0.1/cb")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(tok.AccessToken, "ZXhjaGFuZ2U") || !strings.HasSuffix(tok.RefreshToken, "ZXhjaGFuZ2U") || !tok.Expiry.Equal(testNow.Add(12*time.Hour)) {
		t.Errorf("the authed_user token was not lifted: %+v", tok)
	}
	q := srv.only(t, "POST", kc.tokenPath)
	if q.Form.Get("code") != "code-1" || q.Form.Get("code_verifier") == "" || q.Form.Get("redirect_uri") != "http://127.0.0.1/cb" {
		t.Errorf("exchange form = %v", q.Form)
	}
	u := p.AuthCodeURL("st", "challenge", "http://127.0.0.1/cb")
	if !strings.Contains(u, "user_scope=chat%3Awrite%2Cusers%3Aread") || strings.Contains(u, "&scope=") {
		t.Errorf("Slack authorization URL %s: want user_scope, comma-separated", u)
	}
}

func TestAuthCodeURL(t *testing.T) {
	cases := []struct {
		pc   ProviderConfig
		want []string
		not  []string
	}{
		{ProviderConfig{ID: "g", Kind: KindGoogle, ClientID: "c"},
			[]string{"access_type=offline", "prompt=consent", "code_challenge=CH", "code_challenge_method=S256", "scope=openid+email+profile", "https://accounts.google.com/o/oauth2/v2/auth?"}, nil},
		{ProviderConfig{ID: "m", Kind: KindMicrosoft, ClientID: "c", Tenant: "contoso", Scopes: []string{"User.Read"}},
			[]string{"https://login.microsoftonline.com/contoso/oauth2/v2.0/authorize?", "scope=User.Read+offline_access"}, nil},
		{ProviderConfig{ID: "gh", Kind: KindGitHub, ClientID: "c", PKCEMethods: []string{"none"}},
			[]string{"https://github.com/login/oauth/authorize?", "state=ST", "redirect_uri="}, []string{"code_challenge"}},
	}
	for _, c := range cases {
		t.Run(c.pc.Kind, func(t *testing.T) {
			p := MustNew(t, c.pc, nil)
			u := p.AuthCodeURL("ST", "CH", "http://127.0.0.1:8080/cb")
			for _, w := range c.want {
				if !strings.Contains(u, w) {
					t.Errorf("%s lacks %s", u, w)
				}
			}
			for _, w := range c.not {
				if strings.Contains(u, w) {
					t.Errorf("%s contains %s", u, w)
				}
			}
		})
	}
}

func TestDeviceFlowGitHubShapes(t *testing.T) {
	kc := kindCases()[0]
	srv := MustReplay(t)
	p := MustNew(t, kc.config(srv.URL), srv.Client())
	srv.answer(t, "POST", "/login/device/code", "github/device_code")
	srv.answer(t, "POST", kc.tokenPath, "github/authorization_pending")
	da, err := p.DeviceAuth(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if da.UserCode != "WDJB-MJHT" || da.Interval != 5*time.Second || !da.Expiry.Equal(testNow.Add(900*time.Second)) {
		t.Errorf("device auth = %+v", da)
	}
	if q := srv.only(t, "POST", "/login/device/code"); q.Form.Has("client_secret") || q.Form.Get("client_id") != testClientID {
		t.Errorf("GitHub device request form %v: want client_id alone", q.Form)
	}
	_, err = p.PollDevice(context.Background(), da.DeviceCode)
	var pe *tokenbroker.ProviderError
	if !errors.As(err, &pe) || !pe.Transient() || pe.Code != "authorization_pending" {
		t.Fatalf("PollDevice = %v, want transient authorization_pending", err)
	}
	q := srv.only(t, "POST", kc.tokenPath)
	if q.Form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:device_code" || q.Form.Get("device_code") != da.DeviceCode {
		t.Errorf("poll form = %v", q.Form)
	}
}

func TestNotImplemented(t *testing.T) {
	p := MustNew(t, ProviderConfig{ID: "b", Kind: KindBitbucket, ClientID: "c"}, nil)
	if _, err := p.DeviceAuth(context.Background()); tokenbroker.ErrorCode(err) != tokenbroker.ENOTIMPLEMENTED {
		t.Errorf("DeviceAuth = %v", err)
	}
	if _, err := p.PollDevice(context.Background(), "dc"); tokenbroker.ErrorCode(err) != tokenbroker.ENOTIMPLEMENTED {
		t.Errorf("PollDevice = %v", err)
	}
	if p.Info().SupportsDevice {
		t.Error("SupportsDevice")
	}
	if _, err := p.Refresh(context.Background(), ""); tokenbroker.ErrorCode(err) != tokenbroker.EINVALID {
		t.Errorf("Refresh(\"\") = %v", err)
	}
}

func TestNetworkErrorIsTransient(t *testing.T) {
	srv := MustReplay(t)
	url := srv.URL
	srv.Close()
	p := MustNew(t, ProviderConfig{ID: "o", Kind: KindOAuth2, ClientID: "c", ClientSecret: testSecret, AuthURL: url + "/a", TokenURL: url + "/t"}, &http.Client{})
	_, err := p.Refresh(context.Background(), oldRefresh)
	var pe *tokenbroker.ProviderError
	if !errors.As(err, &pe) || !pe.Transient() || pe.StatusCode != 0 || pe.Err == nil {
		t.Fatalf("err = %v, want a transient network ProviderError", err)
	}
	if strings.Contains(err.Error(), oldRefresh) {
		t.Error("leaks the refresh token")
	}
}
