package fakeidp_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/fakeidp"
)

// The tests below show each setting that imitates a real server's
// difference from fakeidp's defaults (docs/fakeidp.md lists them; the
// Ory Hydra ones are pinned against Hydra itself by internal/hydratest).

// overlapping sends two refreshes with one token that overlap: the
// server's latency holds both after they arrived, so the second is
// processed after the first rotated the token it arrived with.
func overlapping(t *testing.T, s *fakeidp.Server, rt string) [2]Resp {
	t.Helper()
	var answers [2]Resp
	var wg sync.WaitGroup
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = Refresh(t, s, rt)
		}()
	}
	wg.Wait()
	return answers
}

func TestOverlappingRefresh(t *testing.T) {
	faults := fakeidp.Faults{Latency: 300 * time.Millisecond, Target: fakeidp.TargetRefresh}
	t.Run("default: a reuse", func(t *testing.T) {
		s := MustStart(t, fakeidp.Config{Faults: faults})
		a := overlapping(t, s, MustIssue(t, s, "alice").RefreshToken)
		if st := s.Stats(); st.ReuseDetections != 1 || st.FamiliesRevoked != 1 || st.OverlappingRefreshes != 0 {
			t.Fatalf("stats %+v; answers %d, %d", st, a[0].Status, a[1].Status)
		}
	})
	t.Run("server_error", func(t *testing.T) {
		s := MustStart(t, fakeidp.Config{Faults: faults, OverlappingRefresh: fakeidp.OverlapServerError})
		a := overlapping(t, s, MustIssue(t, s, "alice").RefreshToken)
		var ok, failed []Resp
		for _, r := range a {
			if r.Status == http.StatusOK {
				ok = append(ok, r)
			} else {
				failed = append(failed, r)
			}
		}
		if len(ok) != 1 || len(failed) != 1 {
			t.Fatalf("answers %d and %d, want one 200 and one 500", a[0].Status, a[1].Status)
		}
		wantError(t, failed[0], http.StatusInternalServerError, "server_error")
		if st := s.Stats(); st.ReuseDetections != 0 || st.FamiliesRevoked != 0 || st.OverlappingRefreshes != 1 {
			t.Fatalf("stats %+v", st)
		}
		// The winner's pair lives on.
		wantStatus(t, Refresh(t, s, ok[0].Str("refresh_token")), http.StatusOK)
	})
	t.Run("revoked_pair", func(t *testing.T) {
		s := MustStart(t, fakeidp.Config{Faults: faults, OverlappingRefresh: fakeidp.OverlapRevokedPair})
		a := overlapping(t, s, MustIssue(t, s, "alice").RefreshToken)
		wantStatus(t, a[0], http.StatusOK)
		wantStatus(t, a[1], http.StatusOK)
		live := 0
		for _, r := range a {
			if fam, ok := s.FamilyOf(r.Str("refresh_token")); ok && !fam.Revoked {
				live++
			}
		}
		if st := s.Stats(); live != 1 || st.ReuseDetections != 0 || st.OverlappingRefreshes != 1 {
			t.Fatalf("%d live pairs, stats %+v; want one live pair, no reuse", live, st)
		}
	})
	t.Run("a replay after the rotation is still a reuse", func(t *testing.T) {
		s := MustStart(t, fakeidp.Config{OverlappingRefresh: fakeidp.OverlapServerError})
		rt := MustIssue(t, s, "alice").RefreshToken
		wantStatus(t, Refresh(t, s, rt), http.StatusOK)
		wantError(t, Refresh(t, s, rt), http.StatusBadRequest, "invalid_grant")
		if st := s.Stats(); st.ReuseDetections != 1 || st.OverlappingRefreshes != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestRevokeGrantWithAccessToken(t *testing.T) {
	for _, grant := range []bool{false, true} {
		s := MustStart(t, fakeidp.Config{RevokeGrantWithAccessToken: grant})
		tok := MustIssue(t, s, "alice")
		wantStatus(t, MustPost(t, s, fakeidp.PathRevoke, url.Values{"token": {tok.AccessToken}}, defaultAuth), http.StatusOK)
		wantStatus(t, Userinfo(t, s, tok.AccessToken), http.StatusUnauthorized)
		r := Refresh(t, s, tok.RefreshToken)
		if grant {
			wantError(t, r, http.StatusBadRequest, "invalid_grant")
		} else {
			wantStatus(t, r, http.StatusOK)
		}
	}
}

func TestRequireOfflineAccess(t *testing.T) {
	s := MustStart(t, fakeidp.Config{RequireOfflineAccess: true})
	if tok := MustIssue(t, s, "alice", "openid", "read"); tok.RefreshToken != "" {
		t.Fatal("a refresh token without offline_access")
	}
	for _, offline := range []string{"offline_access", "offline"} {
		tok := MustIssue(t, s, "alice", "read", offline)
		if tok.RefreshToken == "" {
			t.Fatalf("no refresh token with %s", offline)
		}
		wantStatus(t, Refresh(t, s, tok.RefreshToken), http.StatusOK)
	}
}

func TestTokenTypeAndExpiresIn(t *testing.T) {
	s := MustStart(t, fakeidp.Config{TokenType: "bearer", ExpiresInRoundDown: true, AccessTokenTTL: 10 * time.Second})
	r := Refresh(t, s, MustIssue(t, s, "alice").RefreshToken)
	if r.Str("token_type") != "bearer" || r.JSON["expires_in"] != float64(9) {
		t.Fatalf("token_type %q, expires_in %v; want bearer, 9", r.Str("token_type"), r.JSON["expires_in"])
	}
	s = MustStart(t, fakeidp.Config{AccessTokenTTL: 10 * time.Second})
	r = Refresh(t, s, MustIssue(t, s, "alice").RefreshToken)
	if r.Str("token_type") != "Bearer" || r.JSON["expires_in"] != float64(10) {
		t.Fatalf("defaults: token_type %q, expires_in %v", r.Str("token_type"), r.JSON["expires_in"])
	}
}

func TestIgnoreRefreshScope(t *testing.T) {
	for _, ignore := range []bool{false, true} {
		s := MustStart(t, fakeidp.Config{IgnoreRefreshScope: ignore})
		tok := MustIssue(t, s, "alice", "read")
		r := MustPost(t, s, fakeidp.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken},
			"scope": {"read admin"}}, defaultAuth)
		if !ignore {
			wantError(t, r, http.StatusBadRequest, "invalid_grant")
			continue
		}
		wantStatus(t, r, http.StatusOK)
		if r.Str("scope") != "read" {
			t.Fatalf("scope %q, want the grant's", r.Str("scope"))
		}
	}
}

func TestNoBasicChallengeAndVerboseErrors(t *testing.T) {
	s := MustStart(t, fakeidp.Config{NoBasicChallenge: true, VerboseErrors: true})
	r := Refresh(t, s, "x", withBasic(fakeidp.DefaultClientID, "wrong"))
	wantError(t, r, http.StatusUnauthorized, "invalid_client")
	if r.Header.Get("WWW-Authenticate") != "" {
		t.Fatalf("WWW-Authenticate %q", r.Header.Get("WWW-Authenticate"))
	}
	if !strings.HasPrefix(r.Str("error_description"), "Client authentication failed (e.g., unknown client") {
		t.Fatalf("error_description %q", r.Str("error_description"))
	}
	r = Refresh(t, s, "fakeidp_rt_unknown")
	if d := r.Str("error_description"); !strings.HasPrefix(d, "The provided authorization grant") || !strings.HasSuffix(d, "The refresh token is unknown.") {
		t.Fatalf("error_description %q", d)
	}
	s = MustStart(t, fakeidp.Config{})
	if r := Refresh(t, s, "x", withBasic(fakeidp.DefaultClientID, "wrong")); r.Header.Get("WWW-Authenticate") == "" {
		t.Fatal("default: no Basic challenge")
	}
}

func TestMinimalUserinfo(t *testing.T) {
	s := MustStart(t, fakeidp.Config{MinimalUserinfo: true})
	r := Userinfo(t, s, MustIssue(t, s, "alice").AccessToken)
	wantStatus(t, r, http.StatusOK)
	if len(r.JSON) != 3 || r.JSON["sub"] != "1001" || r.JSON["preferred_username"] != "alice" || r.JSON["email"] != "alice@example.com" {
		t.Fatalf("userinfo %v", r.JSON)
	}
}

func TestMinStateLengthAndNoIss(t *testing.T) {
	s := MustStart(t, fakeidp.Config{OIDC: true, AutoApprove: "alice", MinStateLength: 8, NoIssParameter: true})
	authorize := func(state string) url.Values {
		q := url.Values{"client_id": {fakeidp.DefaultClientID}, "redirect_uri": {"http://127.0.0.1:1/cb"},
			"response_type": {"code"}, "scope": {"openid"}, "state": {state}}
		return location(t, MustGet(t, s, fakeidp.PathAuthorize+"?"+q.Encode())).Query()
	}
	if q := authorize("short"); q.Get("error") != "invalid_state" || q.Get("code") != "" {
		t.Fatalf("short state: %v", q)
	}
	if q := authorize("long-enough-state"); q.Get("code") == "" || q.Has("iss") {
		t.Fatalf("callback %v; want a code and no iss", q)
	}
	disc := MustGet(t, s, fakeidp.PathDiscovery)
	if disc.JSON["authorization_response_iss_parameter_supported"] != false {
		t.Fatalf("discovery says iss is sent")
	}
}

func TestSeparateLoginOrigin(t *testing.T) {
	s := MustStart(t, fakeidp.Config{SeparateLoginOrigin: true})
	if s.LoginURL() == "" || s.LoginURL() == s.URL() {
		t.Fatalf("login URL %q", s.LoginURL())
	}
	q := url.Values{"client_id": {fakeidp.DefaultClientID}, "redirect_uri": {"http://127.0.0.1:1/cb"},
		"response_type": {"code"}, "state": {"state-0123"}}
	loc := location(t, MustGet(t, s, fakeidp.PathAuthorize+"?"+q.Encode()))
	if "http://"+loc.Host != s.LoginURL() {
		t.Fatalf("/authorize sent the browser to %s, want the login origin %s", loc, s.LoginURL())
	}
	page := MustGet(t, s, loc.String())
	wantStatus(t, page, http.StatusOK)
	if !strings.Contains(page.Body, `action="`+s.URL()+fakeidp.PathAuthorize+`"`) {
		t.Fatalf("the login form does not post to the server's origin:\n%s", page.Body)
	}
	form := formFields(page.Body)
	form.Set("login", "alice")
	form.Set("action", "approve")
	cb := location(t, MustPost(t, s, fakeidp.PathAuthorize, form))
	if cb.Query().Get("code") == "" || cb.Query().Get("state") != "state-0123" {
		t.Fatalf("callback %s", cb)
	}
}
