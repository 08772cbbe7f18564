package hydratest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// answer is one token or revocation endpoint answer.
type answer struct {
	status int
	header http.Header
	body   map[string]any
}

func (a answer) str(k string) string { s, _ := a.body[k].(string); return s }

func postForm(t *testing.T, target string, c Client, form url.Values) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(c.ID, c.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return answer{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, body: map[string]any{}}
	_ = json.Unmarshal(b, &a.body)
	return a
}

func refresh(t *testing.T, s *Server, c Client, rt string, extra ...string) answer {
	t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	for i := 0; i+1 < len(extra); i += 2 {
		form.Set(extra[i], extra[i+1])
	}
	return postForm(t, s.TokenURL(), c, form)
}

// TestHydraBehaviour pins how Hydra behaves where fakeidp, by default,
// behaves otherwise (docs/fakeidp.md lists each difference and the option
// that imitates it). If Hydra changes, this test says which line of that
// list is out of date.
func TestHydraBehaviour(t *testing.T) {
	s := Start(t, Options{AccessTokenTTL: 10 * time.Second})
	const cb = "http://127.0.0.1:1/cb"
	c := s.CreateClient(t, Client{ID: "probe", Secret: "probe-secret-0123456789", RedirectURIs: []string{cb}})
	full := []string{"openid", "offline_access", "read"}

	t.Run("reuse revokes the grant", func(t *testing.T) {
		tok := s.IssueToken(t, c, cb, full...)
		next := refresh(t, s, c, tok.RefreshToken)
		again := refresh(t, s, c, tok.RefreshToken)
		if next.status != 200 || again.status != 400 || again.str("error") != "invalid_grant" {
			t.Fatalf("rotation %d, replay %d %q; want 200, 400 invalid_grant", next.status, again.status, again.str("error"))
		}
		if s.Introspect(t, next.str("refresh_token")).Active || s.Introspect(t, next.str("access_token")).Active {
			t.Fatal("the pair the rotation issued survived the replay")
		}
	})

	t.Run("token type is lower case", func(t *testing.T) {
		if a := refresh(t, s, c, s.IssueToken(t, c, cb, full...).RefreshToken); a.str("token_type") != "bearer" {
			t.Fatalf("token_type %q", a.str("token_type"))
		}
	})

	t.Run("no refresh token without offline_access", func(t *testing.T) {
		if tok := s.IssueToken(t, c, cb, "openid", "read"); tok.RefreshToken != "" {
			t.Fatal("Hydra issued a refresh token without offline_access")
		}
	})

	t.Run("the scope of a refresh is ignored", func(t *testing.T) {
		tok := s.IssueToken(t, c, cb, "openid", "offline_access")
		a := refresh(t, s, c, tok.RefreshToken, "scope", "openid offline_access read admin")
		if a.status != 200 || a.str("scope") != "openid offline_access" {
			t.Fatalf("refresh asking for more scope: %d, scope %q", a.status, a.str("scope"))
		}
	})

	t.Run("revoking the access token revokes the grant", func(t *testing.T) {
		tok := s.IssueToken(t, c, cb, full...)
		if a := postForm(t, s.RevokeURL(), c, url.Values{"token": {tok.AccessToken}}); a.status != 200 {
			t.Fatalf("revoke: %d", a.status)
		}
		if s.Introspect(t, tok.RefreshToken).Active {
			t.Fatal("the refresh token survived the revocation of its access token")
		}
	})

	t.Run("invalid_client without a challenge", func(t *testing.T) {
		bad := c
		bad.Secret = "wrong"
		a := refresh(t, s, bad, "x")
		if a.status != 401 || a.str("error") != "invalid_client" || a.header.Get("WWW-Authenticate") != "" {
			t.Fatalf("wrong secret: %d %q, WWW-Authenticate %q", a.status, a.str("error"), a.header.Get("WWW-Authenticate"))
		}
	})

	t.Run("userinfo has only the session's claims", func(t *testing.T) {
		tok := s.IssueToken(t, c, cb, full...)
		req, _ := http.NewRequest(http.MethodGet, s.UserinfoURL(), nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var claims map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&claims); err != nil {
			t.Fatal(err)
		}
		if claims["sub"] != "alice" || claims["preferred_username"] != "alice" || claims["login"] != nil || claims["id"] != nil {
			t.Fatalf("userinfo %v", claims)
		}
	})

	t.Run("a short state is refused", func(t *testing.T) {
		hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := hc.Get(s.OAuth2Config(c, cb, full...).AuthCodeURL("short"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if loc == nil || loc.Query().Get("error") != "invalid_state" {
			t.Fatalf("state of 5 characters: HTTP %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})

	t.Run("overlapping refreshes", func(t *testing.T) {
		// Two refreshes with one token at once: Hydra's storage refuses
		// the overlapping one (500 server_error) or, at times, issues a
		// second pair that is already revoked; it does not count a reuse.
		outcomes := map[string]int{}
		for range 6 {
			tok := s.IssueToken(t, c, cb, full...)
			answers := make([]answer, 2)
			var wg sync.WaitGroup
			for i := range answers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					answers[i] = refresh(t, s, c, tok.RefreshToken)
				}()
			}
			wg.Wait()
			live := 0
			for _, a := range answers {
				switch {
				case a.status == 200 && s.Introspect(t, a.str("refresh_token")).Active:
					live++
					outcomes["200 live"]++
				case a.status == 200:
					outcomes["200 revoked"]++
				default:
					outcomes[a.str("error")]++
				}
			}
			if live > 1 {
				t.Fatalf("one refresh token gave two live pairs")
			}
		}
		t.Logf("overlapping refreshes, 6 pairs: %v", outcomes)
	})
}
