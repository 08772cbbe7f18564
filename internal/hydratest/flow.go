package hydratest

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// OAuth2Config is the x/oauth2 configuration of client c at this server.
func (s *Server) OAuth2Config(c Client, redirectURI string, scopes ...string) *oauth2.Config {
	style := oauth2.AuthStyleInHeader
	if c.AuthMethod == "client_secret_post" {
		style = oauth2.AuthStyleInParams
	}
	return &oauth2.Config{
		ClientID: c.ID, ClientSecret: c.Secret, RedirectURL: redirectURI, Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: s.AuthURL(), TokenURL: s.TokenURL(), AuthStyle: style},
	}
}

// IssueToken runs the authorization code flow with PKCE for client c
// without a browser, signing in as login_hint "alice", and returns the
// token the code exchange gave. redirectURI must be one of
// c's; nothing needs to listen there.
func (s *Server) IssueToken(tb testing.TB, c Client, redirectURI string, scopes ...string) *oauth2.Token {
	tb.Helper()
	conf := s.OAuth2Config(c, redirectURI, scopes...)
	verifier := oauth2.GenerateVerifier()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), redirectURI) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := hc.Get(conf.AuthCodeURL("hydratest-state-0123456789", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("login_hint", "alice")))
	if err != nil {
		tb.Fatalf("hydratest: authorize: %v", err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		tb.Fatalf("hydratest: authorize ended with HTTP %d at %q, not a code", resp.StatusCode, resp.Header.Get("Location"))
	}
	tok, err := conf.Exchange(context.Background(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		tb.Fatalf("hydratest: code exchange: %v", err)
	}
	return tok
}
