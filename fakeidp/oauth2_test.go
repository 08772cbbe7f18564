package fakeidp_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/fakeidp"
	"golang.org/x/oauth2"
)

// These tests drive the server with the real golang.org/x/oauth2 client.

func TestOAuth2CodeFlowWithPKCE(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{RequirePKCE: true, RedirectURIs: []string{testRedirect}})
	conf := s.OAuth2Config(testRedirect, "read", "write")
	ctx := context.Background()

	verifier := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL("state-xyz", oauth2.S256ChallengeOption(verifier))
	back := MustAuthorize(t, s, authURL, "alice")
	if back.Query().Get("state") != "state-xyz" {
		t.Fatalf("state = %q", back.Query().Get("state"))
	}
	code := back.Query().Get("code")

	// The wrong verifier fails with the RFC error the client understands.
	_, err := conf.Exchange(ctx, code, oauth2.VerifierOption(oauth2.GenerateVerifier()))
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("exchange with a wrong verifier: %v", err)
	}
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if !tok.Valid() || tok.RefreshToken == "" || tok.Type() != "Bearer" || time.Until(tok.Expiry) < 59*time.Minute {
		t.Fatalf("token: %+v", tok)
	}
	resp, err := conf.Client(ctx, tok).Get(s.Endpoints().Userinfo)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("userinfo with the client's token: %d", resp.StatusCode)
	}
}

func TestOAuth2DeviceFlow(t *testing.T) {
	t.Parallel()
	// One-second interval: the client's first poll comes after a real second.
	s := MustStart(t, fakeidp.Config{DeviceInterval: time.Second})
	conf := s.OAuth2Config("", "read")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	da, err := conf.DeviceAuth(ctx)
	if err != nil {
		t.Fatalf("DeviceAuth: %v", err)
	}
	if da.Interval != 1 || da.VerificationURI != s.Endpoints().DeviceVerification || da.UserCode == "" {
		t.Fatalf("device auth: %+v", da)
	}
	// The user approves on the verification page while the device polls.
	approved := make(chan error, 1)
	go func() {
		resp, err := http.PostForm(da.VerificationURI, url.Values{"user_code": {da.UserCode}, "login": {"bob"}, "action": {"approve"}})
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = errors.New(resp.Status)
			}
		}
		approved <- err
	}()
	tok, err := conf.DeviceAccessToken(ctx, da)
	if err := <-approved; err != nil {
		t.Fatalf("approving: %v", err)
	}
	if err != nil {
		t.Fatalf("DeviceAccessToken: %v", err)
	}
	if !tok.Valid() || tok.RefreshToken == "" {
		t.Fatalf("token: %+v", tok)
	}
	if st := s.Stats(); st.DeviceGrants != 1 || st.Families[mustFamily(t, s, tok.AccessToken)].UserID != "1002" {
		t.Fatalf("stats: %+v", st)
	}
}

func TestOAuth2DeviceFlowDenied(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{DeviceInterval: time.Second})
	conf := s.OAuth2Config("")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	da, err := conf.DeviceAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DenyDevice(da.UserCode); err != nil {
		t.Fatal(err)
	}
	_, err = conf.DeviceAccessToken(ctx, da)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "access_denied" {
		t.Fatalf("DeviceAccessToken after deny: %v", err)
	}
}

func TestOAuth2Refresh(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{})
	conf := s.OAuth2Config(testRedirect)
	ctx := context.Background()
	seed := MustIssue(t, s, "alice").OAuth2()
	seed.Expiry = time.Now().Add(-time.Minute) // expired: the TokenSource must refresh

	tok, err := conf.TokenSource(ctx, seed).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if tok.AccessToken == seed.AccessToken || tok.RefreshToken == seed.RefreshToken || !tok.Valid() {
		t.Fatalf("refresh did not rotate: %+v", tok)
	}
	fam, _ := s.FamilyOf(tok.RefreshToken)
	if fam.Generation != 2 || s.Stats().RefreshSuccesses != 1 {
		t.Fatalf("family %+v, stats %+v", fam, s.Stats())
	}
	// A second TokenSource holding the old token is a reuse: the client
	// sees invalid_grant, and the family is revoked.
	_, err = conf.TokenSource(ctx, seed).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || re.Response.StatusCode != http.StatusBadRequest {
		t.Fatalf("reuse: %v", err)
	}
	tok.Expiry = time.Now().Add(-time.Minute)
	if _, err := conf.TokenSource(ctx, tok).Token(); err == nil {
		t.Fatal("refresh in a revoked family succeeded")
	}
}

func TestOAuth2RefreshGitHubFlavor(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{Flavor: fakeidp.FlavorGitHub})
	conf := s.OAuth2Config(testRedirect)
	ctx := context.Background()
	seed := MustIssue(t, s, "alice").OAuth2()
	seed.Expiry = time.Now().Add(-time.Minute)
	tok, err := conf.TokenSource(ctx, seed).Token()
	if err != nil {
		t.Fatalf("refresh (form-encoded answer): %v", err)
	}
	if time.Until(tok.Expiry) < 59*time.Minute || tok.RefreshToken == seed.RefreshToken {
		t.Fatalf("token: %+v", tok)
	}
	// HTTP 200 with error=bad_refresh_token: x/oauth2 still reports it.
	_, err = conf.TokenSource(ctx, seed).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "bad_refresh_token" || re.Response.StatusCode != http.StatusOK {
		t.Fatalf("reuse on GitHub: %v", err)
	}
}

func TestOAuth2ClientAuthAutoDetect(t *testing.T) {
	t.Parallel()
	// x/oauth2's auto-detection tries Basic, gets invalid_client, retries
	// with form parameters: the server counts both attempts.
	s := MustStart(t, fakeidp.Config{ClientAuth: fakeidp.ClientAuthForm})
	conf := s.OAuth2Config(testRedirect)
	seed := MustIssue(t, s, "alice").OAuth2()
	seed.Expiry = time.Now().Add(-time.Minute)
	if _, err := conf.TokenSource(context.Background(), seed).Token(); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if st := s.Stats(); st.RefreshCalls != 2 || st.RefreshSuccesses != 1 {
		t.Fatalf("stats: %+v", st)
	}
	// Pinned to Basic it fails.
	conf.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	seed = MustIssue(t, s, "alice").OAuth2()
	seed.Expiry = time.Now().Add(-time.Minute)
	_, err := conf.TokenSource(context.Background(), seed).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_client" {
		t.Fatalf("Basic against form-only: %v", err)
	}
}

func mustFamily(tb testing.TB, s *fakeidp.Server, token string) string {
	tb.Helper()
	fam, ok := s.FamilyOf(token)
	if !ok {
		tb.Fatal("unknown token")
	}
	return fam.ID
}

func TestProviderCompatiblePaths(t *testing.T) {
	t.Parallel()
	// A GitHub Enterprise Server–style client with base URL = the server.
	s := MustStart(t, fakeidp.Config{Flavor: fakeidp.FlavorGitHub, AutoApprove: "alice"})
	conf := &oauth2.Config{
		ClientID:     fakeidp.DefaultClientID,
		ClientSecret: fakeidp.DefaultClientSecret,
		RedirectURL:  testRedirect,
		Endpoint: oauth2.Endpoint{
			AuthURL:       s.URL() + "/login/oauth/authorize",
			TokenURL:      s.URL() + "/login/oauth/access_token",
			DeviceAuthURL: s.URL() + "/login/device/code",
			AuthStyle:     oauth2.AuthStyleInParams,
		},
	}
	ctx := context.Background()
	back := location(t, MustGet(t, s, conf.AuthCodeURL("st")))
	tok, err := conf.Exchange(ctx, back.Query().Get("code"))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	for _, p := range []string{"/api/v3/user", "/user", "/api/v4/user", "/api/v1/user"} {
		r := MustGet(t, s, p, withHeader("Authorization", "token "+tok.AccessToken))
		if r.Status != http.StatusOK || r.JSON["login"] != "alice" || r.JSON["username"] != "alice" {
			t.Fatalf("%s: %d %s", p, r.Status, r.Body)
		}
	}
	// GitHub's grant deletion revokes the family.
	del := func(clientID, secret, body string) int {
		req, _ := http.NewRequest(http.MethodDelete, s.URL()+"/api/v3/applications/"+clientID+"/grant", strings.NewReader(body))
		req.SetBasicAuth(clientID, secret)
		return Do(t, req).Status
	}
	if st := del(fakeidp.DefaultClientID, "wrong", `{"access_token":"`+tok.AccessToken+`"}`); st != http.StatusNotFound {
		t.Fatalf("bad credentials: %d", st)
	}
	if st := del(fakeidp.DefaultClientID, fakeidp.DefaultClientSecret, `{"access_token":"`+tok.AccessToken+`"}`); st != http.StatusNoContent {
		t.Fatalf("delete grant: %d", st)
	}
	wantStatus(t, Userinfo(t, s, tok.AccessToken), http.StatusUnauthorized)
	if _, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
		t.Fatal("refresh after grant deletion succeeded")
	}

	// GitLab-style paths.
	g := MustStart(t, fakeidp.Config{})
	tk := MustIssue(t, g, "bob")
	wantStatus(t, MustPost(t, g, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tk.RefreshToken}}, defaultAuth), http.StatusOK)
	wantStatus(t, MustPost(t, g, "/oauth/revoke", url.Values{"token": {tk.RefreshToken}}, defaultAuth), http.StatusOK)
	if st := g.Stats(); st.Requests["token"] != 1 || st.Requests["revoke"] != 1 || st.FamiliesRevoked != 1 {
		t.Fatalf("stats: %+v", st)
	}
}
