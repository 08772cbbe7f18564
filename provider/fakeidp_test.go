package provider

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/testclock"
)

// clock is the settable clock shared by fakeidp and the provider under
// test.
type clock = testclock.Clock

// MustStartIDP starts a fakeidp on loopback with the clock, closed when the
// test ends.
func MustStartIDP(tb testing.TB, cfg fakeidp.Config, clk *clock) *fakeidp.Server {
	tb.Helper()
	cfg.Now = clk.Now
	s, err := fakeidp.Start(cfg)
	if err != nil {
		tb.Fatalf("fakeidp.Start: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// MustClient is an HTTP client whose idle connections are closed when the
// test ends.
func MustClient(tb testing.TB) *http.Client {
	tb.Helper()
	tr := &http.Transport{}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// MustAuthorize follows the authorization URL of p at an auto-approving
// fakeidp and returns the code from the redirect.
func MustAuthorize(tb testing.TB, p tokenbroker.Provider, c *http.Client, verifier string) (code, redirect string) {
	tb.Helper()
	redirect = "http://127.0.0.1:1/callback"
	u := p.AuthCodeURL("state-1", oauth2.S256ChallengeFromVerifier(verifier), redirect)
	if u == "" {
		tb.Fatal("no authorization URL")
	}
	nc := *c
	nc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := nc.Get(u)
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" || loc.Query().Get("state") != "state-1" {
		tb.Fatalf("authorize answered %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return loc.Query().Get("code"), redirect
}

func idpOptions(c *http.Client, clk *clock) Options {
	o := testOptions(c)
	o.Now = clk.Now
	return o
}

// TestFakeIDPOAuth2 runs the generic oauth2 kind end to end: code flow
// with PKCE, validation, a rotating refresh, the reuse of a used refresh
// token (permanent), the device flow and revocation.
func TestFakeIDPOAuth2(t *testing.T) {
	clk := testclock.New(testNow)
	idp := MustStartIDP(t, fakeidp.Config{AutoApprove: "alice", RequirePKCE: true, ClientAuth: fakeidp.ClientAuthBasic}, clk)
	ep := idp.Endpoints()
	c := MustClient(t)
	p, err := New(t.Context(), ProviderConfig{
		ID: "idp", Kind: KindOAuth2, ClientID: fakeidp.DefaultClientID, ClientSecret: fakeidp.DefaultClientSecret,
		AuthURL: ep.Authorize, TokenURL: ep.Token, DeviceURL: ep.DeviceAuthorization,
		ValidateURL: ep.Userinfo, RevokeURL: ep.Revoke, Scopes: []string{"read"},
	}, idpOptions(c, clk))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	verifier := oauth2.GenerateVerifier()
	code, redirect := MustAuthorize(t, p, c, verifier)
	tok, err := p.Exchange(ctx, code, verifier, redirect)
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" || !tok.Expiry.Equal(clk.Now().Add(fakeidp.DefaultAccessTokenTTL)) {
		t.Fatalf("token = %+v", tok)
	}
	acct, err := p.Validate(ctx, tok.AccessToken)
	if err != nil || acct.ID != "1001" || acct.Login != "alice" || acct.Email != "alice@example.com" {
		t.Fatalf("Validate = %+v, %v", acct, err)
	}

	clk.Advance(time.Minute)
	tok2, err := p.Refresh(ctx, tok.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if tok2.RefreshToken == tok.RefreshToken || tok2.AccessToken == tok.AccessToken {
		t.Fatal("fakeidp rotates refresh tokens, but the token did not change")
	}
	if st := idp.Stats(); st.RefreshCalls != 1 || st.RefreshSuccesses != 1 {
		t.Fatalf("stats after one refresh: calls=%d successes=%d", st.RefreshCalls, st.RefreshSuccesses)
	}

	// The used refresh token again: permanent, and sent exactly once.
	_, err = p.Refresh(ctx, tok.RefreshToken)
	var pe *tokenbroker.ProviderError
	if !errors.As(err, &pe) || pe.Transient() || pe.Code != "invalid_grant" || pe.StatusCode != 400 {
		t.Fatalf("reused refresh = %v, want permanent invalid_grant", err)
	}
	if strings.Contains(pe.Reason(), tok.RefreshToken) {
		t.Fatal("reason holds the token")
	}
	if st := idp.Stats(); st.RefreshCalls != 2 || st.ReuseDetections != 1 {
		t.Fatalf("stats: calls=%d reuse=%d, want 2 and 1", st.RefreshCalls, st.ReuseDetections)
	}
	// Reuse detection revoked the family: the rotated token is dead too.
	if t3, err := p.Refresh(ctx, tok2.RefreshToken); !errors.As(err, &pe) || pe.Transient() {
		t.Logf("t3=%+v tok2=%+v stats=%+v", t3, tok2, idp.Stats())
		t.Fatalf("refresh after reuse detection = %v, want permanent", err)
	}

	// Device flow: one poll per call, pending then granted.
	da, err := p.DeviceAuth(ctx)
	if err != nil {
		t.Fatalf("DeviceAuth: %v", err)
	}
	if da.Interval != fakeidp.DefaultDeviceInterval || da.VerificationURI == "" {
		t.Fatalf("device auth = %+v", da)
	}
	if _, err := p.PollDevice(ctx, da.DeviceCode); !errors.As(err, &pe) || !pe.Transient() || pe.Code != "authorization_pending" {
		t.Fatalf("first poll = %v, want transient authorization_pending", err)
	}
	if err := idp.ApproveDevice(da.UserCode, "bob"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(da.Interval)
	dtok, err := p.PollDevice(ctx, da.DeviceCode)
	if err != nil {
		t.Fatalf("second poll: %v", err)
	}
	if acct, err := p.Validate(ctx, dtok.AccessToken); err != nil || acct.Login != "bob" {
		t.Fatalf("Validate device token = %+v, %v", acct, err)
	}
	if n := idp.Stats().TokenRequests["urn:ietf:params:oauth:grant-type:device_code"]; n != 2 {
		t.Fatalf("%d device token requests, want 2 (one per PollDevice)", n)
	}

	// Revocation ends the grant.
	if err := p.Revoke(ctx, dtok); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if _, err := p.Refresh(ctx, dtok.RefreshToken); !errors.As(err, &pe) || pe.Transient() {
		t.Fatalf("refresh after revocation = %v, want permanent", err)
	}
	if _, err := p.Validate(ctx, dtok.AccessToken); !errors.As(err, &pe) || pe.Transient() || pe.StatusCode != 401 {
		t.Fatalf("validate after revocation = %v, want a permanent 401", err)
	}
}

// TestFakeIDPAuthStyles: a server that accepts one client authentication
// method rejects the other in one request, never two.
func TestFakeIDPAuthStyles(t *testing.T) {
	for _, c := range []struct {
		mode  fakeidp.ClientAuthMode
		style string
		ok    bool
	}{
		{fakeidp.ClientAuthBasic, authStyleHeader, true},
		{fakeidp.ClientAuthBasic, authStyleParams, false},
		{fakeidp.ClientAuthForm, authStyleParams, true},
		{fakeidp.ClientAuthForm, authStyleHeader, false},
	} {
		t.Run(string(c.mode)+"/"+c.style, func(t *testing.T) {
			clk := testclock.New(testNow)
			idp := MustStartIDP(t, fakeidp.Config{ClientAuth: c.mode}, clk)
			ep := idp.Endpoints()
			hc := MustClient(t)
			p, err := New(t.Context(), ProviderConfig{ID: "idp", Kind: KindOAuth2, ClientID: fakeidp.DefaultClientID,
				ClientSecret: fakeidp.DefaultClientSecret, AuthStyle: c.style, AuthURL: ep.Authorize, TokenURL: ep.Token}, idpOptions(hc, clk))
			if err != nil {
				t.Fatal(err)
			}
			seed, err := idp.IssueToken("alice")
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Refresh(t.Context(), seed.RefreshToken)
			var pe *tokenbroker.ProviderError
			if c.ok && err != nil || !c.ok && (!errors.As(err, &pe) || pe.Transient() || pe.StatusCode != 401) {
				t.Fatalf("Refresh = %v, want ok=%v (or a permanent 401)", err, c.ok)
			}
			if n := idp.Stats().RefreshCalls; n != 1 {
				t.Fatalf("%d refresh requests, want exactly 1", n)
			}
		})
	}
}

// TestFakeIDPGitHub runs the github kind against fakeidp's GitHub flavour:
// errors come as HTTP 200 with bad_refresh_token.
func TestFakeIDPGitHub(t *testing.T) {
	clk := testclock.New(testNow)
	idp := MustStartIDP(t, fakeidp.Config{Flavor: fakeidp.FlavorGitHub, ClientAuth: fakeidp.ClientAuthForm, AutoApprove: "carol", AccessTokenTTL: 8 * time.Hour, RefreshTokenTTL: 4380 * time.Hour}, clk)
	c := MustClient(t)
	// base_url as for GitHub Enterprise Server: every URL is the kind's
	// default (/login/oauth/..., /api/v3/user, /api/v3/applications/...).
	p, err := New(t.Context(), ProviderConfig{
		ID: "github", Kind: KindGitHub, ClientID: fakeidp.DefaultClientID, ClientSecret: fakeidp.DefaultClientSecret,
		BaseURL: idp.URL(), ExtraTokenKeys: []string{"refresh_token_expires_in"},
	}, idpOptions(c, clk))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	verifier := oauth2.GenerateVerifier()
	code, redirect := MustAuthorize(t, p, c, verifier)
	tok, err := p.Exchange(ctx, code, verifier, redirect)
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	acct, err := p.Validate(ctx, tok.AccessToken)
	if err != nil || acct.ID != "1003" || acct.Login != "carol" {
		t.Fatalf("Validate = %+v, %v", acct, err)
	}
	if tok.Extra["refresh_token_expires_in"] == "" {
		t.Errorf("extra key refresh_token_expires_in not kept: %v", tok.Extra)
	}
	if !tok.Expiry.Equal(testNow.Add(8 * time.Hour)) {
		t.Errorf("expiry = %v, want 8 hours", tok.Expiry)
	}
	tok2, err := p.Refresh(ctx, tok.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	_, err = p.Refresh(ctx, tok.RefreshToken)
	var pe *tokenbroker.ProviderError
	if !errors.As(err, &pe) || pe.Transient() || pe.StatusCode != 200 || pe.Code != "bad_refresh_token" {
		t.Fatalf("reused refresh = %v, want permanent bad_refresh_token on HTTP 200", err)
	}
	if st := idp.Stats(); st.RefreshCalls != 2 {
		t.Fatalf("%d refresh requests, want 2", st.RefreshCalls)
	}
	// A code used twice: GitHub's bad_verification_code with HTTP 200.
	_, err = p.Exchange(ctx, code, verifier, redirect)
	if !errors.As(err, &pe) || pe.Transient() || pe.StatusCode != 200 || pe.Code != "bad_verification_code" {
		t.Fatalf("second Exchange = %v, want permanent bad_verification_code on 200", err)
	}

	// Grant deletion (DELETE /applications/{client_id}/grant).
	fresh, err := idp.IssueToken("carol")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Revoke(ctx, &tokenbroker.Token{AccessToken: fresh.AccessToken, RefreshToken: fresh.RefreshToken}); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if _, err := p.Refresh(ctx, fresh.RefreshToken); !errors.As(err, &pe) || pe.Code != "bad_refresh_token" {
		t.Fatalf("refresh after grant deletion = %v, want bad_refresh_token", err)
	}
	_ = tok2
}

// TestFakeIDPSelfHosted runs gitlab and gitea with base_url pointing at
// fakeidp: refresh, validation and (gitlab) RFC 7009 revocation at the
// kinds' default paths.
func TestFakeIDPSelfHosted(t *testing.T) {
	for _, kind := range []string{KindGitLab, KindGitea, KindForgejo} {
		t.Run(kind, func(t *testing.T) {
			clk := testclock.New(testNow)
			idp := MustStartIDP(t, fakeidp.Config{ClientAuth: fakeidp.ClientAuthForm}, clk)
			c := MustClient(t)
			p, err := New(t.Context(), ProviderConfig{ID: "self", Kind: kind, BaseURL: idp.URL(),
				ClientID: fakeidp.DefaultClientID, ClientSecret: fakeidp.DefaultClientSecret}, idpOptions(c, clk))
			if err != nil {
				t.Fatal(err)
			}
			seed, err := idp.IssueToken("bob", "read_user")
			if err != nil {
				t.Fatal(err)
			}
			tok, err := p.Refresh(t.Context(), seed.RefreshToken)
			if err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			acct, err := p.Validate(t.Context(), tok.AccessToken)
			if err != nil || acct.ID != "1002" || acct.Login != "bob" {
				t.Fatalf("Validate = %+v, %v", acct, err)
			}
			err = p.Revoke(t.Context(), tok)
			if kind != KindGitLab {
				if tokenbroker.ErrorCode(err) != tokenbroker.ENOTIMPLEMENTED {
					t.Fatalf("Revoke = %v, want ENOTIMPLEMENTED", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Revoke: %v", err)
			}
			if _, err := p.Refresh(t.Context(), tok.RefreshToken); err == nil {
				t.Fatal("refresh after revocation succeeded")
			}
		})
	}
}

// TestFakeIDPOIDC runs the oidc kind: discovery, id_token verification on
// exchange and refresh, userinfo and revocation from the discovery
// document.
func TestFakeIDPOIDC(t *testing.T) {
	clk := testclock.New(testNow)
	idp := MustStartIDP(t, fakeidp.Config{OIDC: true, AutoApprove: "alice"}, clk)
	c := MustClient(t)
	pc := ProviderConfig{ID: "sso", Kind: KindOIDC, Issuer: idp.URL(), ClientID: fakeidp.DefaultClientID,
		ClientSecret: fakeidp.DefaultClientSecret, Scopes: []string{"openid", "email"}}
	p, err := New(t.Context(), pc, idpOptions(c, clk))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	info := p.Info()
	if !info.SupportsDevice || !info.SupportsRevoke {
		t.Errorf("Info after discovery = %+v", info)
	}
	verifier := oauth2.GenerateVerifier()
	code, redirect := MustAuthorize(t, p, c, verifier)
	tok, err := p.Exchange(ctx, code, verifier, redirect)
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	if tok.IDToken == "" {
		t.Fatal("no id_token")
	}
	acct, err := p.Validate(ctx, tok.AccessToken)
	if err != nil || acct.ID != "1001" || acct.Login != "alice" {
		t.Fatalf("Validate = %+v, %v", acct, err)
	}
	tok2, err := p.Refresh(ctx, tok.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if tok2.IDToken == "" {
		t.Error("the refreshed id_token was dropped although valid")
	}
	if err := p.Revoke(ctx, tok2); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if _, err := p.Refresh(ctx, tok2.RefreshToken); err == nil {
		t.Fatal("refresh after revocation succeeded")
	}
	if n := idp.Stats().Requests["discovery"]; n != 1 {
		t.Errorf("%d discovery requests, want 1", n)
	}

	// An id_token from another issuer (another key) fails verification:
	// Exchange fails permanently, Refresh keeps the tokens and drops it.
	other := MustStartIDP(t, fakeidp.Config{OIDC: true, AutoApprove: "alice"}, clk)
	pc2 := pc
	pc2.ID = "sso-forged"
	pc2.TokenURL = other.Endpoints().Token
	pc2.AuthURL = other.Endpoints().Authorize
	forged, err := New(ctx, pc2, idpOptions(c, clk))
	if err != nil {
		t.Fatal(err)
	}
	code, redirect = MustAuthorize(t, forged, c, verifier)
	_, err = forged.Exchange(ctx, code, verifier, redirect)
	var pe *tokenbroker.ProviderError
	if !errors.As(err, &pe) || pe.Transient() || pe.Code != "invalid_id_token" {
		t.Fatalf("Exchange with a forged id_token = %v, want invalid_id_token", err)
	}
	seed, err := other.IssueToken("alice", "openid")
	if err != nil {
		t.Fatal(err)
	}
	rtok, err := forged.Refresh(ctx, seed.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh with a forged id_token: %v", err)
	}
	if rtok.IDToken != "" || rtok.RefreshToken == "" || rtok.RefreshToken == seed.RefreshToken {
		t.Errorf("want the rotated tokens without the forged id_token, got id_token=%v rotated=%v", rtok.IDToken != "", rtok.RefreshToken != seed.RefreshToken)
	}
}

// TestFakeIDPLazyDiscovery: with LazyDiscovery New makes no request, and
// concurrent first calls share one discovery; a failed discovery is
// transient and retried on the next call.
func TestFakeIDPLazyDiscovery(t *testing.T) {
	clk := testclock.New(testNow)
	idp := MustStartIDP(t, fakeidp.Config{OIDC: true}, clk)
	c := MustClient(t)
	opts := idpOptions(c, clk)
	opts.LazyDiscovery = true
	p, err := New(t.Context(), ProviderConfig{ID: "sso", Kind: KindOIDC, Issuer: idp.URL(), ClientID: fakeidp.DefaultClientID,
		ClientSecret: fakeidp.DefaultClientSecret}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if n := idp.Stats().Requests["discovery"]; n != 0 {
		t.Fatalf("%d discovery requests at New, want 0", n)
	}
	seed, err := idp.IssueToken("alice", "openid")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := p.Validate(t.Context(), seed.AccessToken)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := idp.Stats().Requests["discovery"]; n != 1 {
		t.Fatalf("%d discovery requests, want 1", n)
	}

	// An unreachable issuer: New fails without LazyDiscovery, and with it
	// the first call fails transiently.
	down := MustReplay(t)
	downURL := down.URL
	down.Close()
	pc := ProviderConfig{ID: "down", Kind: KindOIDC, Issuer: downURL, ClientID: "c"}
	if _, err := New(t.Context(), pc, idpOptions(c, clk)); err == nil {
		t.Fatal("New discovered an unreachable issuer")
	}
	lazy, err := New(t.Context(), pc, opts)
	if err != nil {
		t.Fatal(err)
	}
	var pe *tokenbroker.ProviderError
	if _, err := lazy.Refresh(t.Context(), oldRefresh); !errors.As(err, &pe) || !pe.Transient() || pe.Code != "discovery_failed" {
		t.Fatalf("Refresh with discovery down = %v, want transient discovery_failed", err)
	}
	if u := lazy.AuthCodeURL("s", "c", "http://127.0.0.1/cb"); u != "" {
		t.Fatalf("AuthCodeURL without discovery = %q, want empty", u)
	}
	if d, err := Discover(context.Background(), idp.URL(), c); err != nil || d.TokenURL != idp.Endpoints().Token {
		t.Fatalf("Discover = %+v, %v", d, err)
	}
}
