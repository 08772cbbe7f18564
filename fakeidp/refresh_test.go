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

func TestRefreshRotates(t *testing.T) {
	t.Parallel()
	clk := NewClock()
	s := MustStart(t, fakeidp.Config{Now: clk.Now, AccessTokenTTL: time.Minute})
	tok := MustIssue(t, s, "alice", "repo")
	if !strings.HasPrefix(tok.AccessToken, fakeidp.PrefixAccessToken) || !strings.HasPrefix(tok.RefreshToken, fakeidp.PrefixRefreshToken) {
		t.Fatalf("token prefixes: %q %q", tok.AccessToken[:12], tok.RefreshToken[:12])
	}
	if tok.Generation != 1 || tok.ExpiresIn != 60 || !tok.Expiry.Equal(clk.Now().Add(time.Minute)) {
		t.Fatalf("issued token: generation %d, expires_in %d, expiry %v", tok.Generation, tok.ExpiresIn, tok.Expiry)
	}

	r := Refresh(t, s, tok.RefreshToken)
	wantStatus(t, r, http.StatusOK)
	newRT, newAT := r.Str("refresh_token"), r.Str("access_token")
	if newRT == tok.RefreshToken || newAT == tok.AccessToken || newRT == "" || newAT == "" {
		t.Fatalf("refresh did not rotate: %s", r.Body)
	}
	if r.JSON["expires_in"] != 60.0 || r.Str("token_type") != "Bearer" || r.Str("scope") != "repo" {
		t.Fatalf("refresh answer: %s", r.Body)
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store (RFC 6749 §5.1)", r.Header.Get("Cache-Control"))
	}
	// The previous access token stays valid until it expires, like at
	// most providers; the new one works too.
	wantStatus(t, Userinfo(t, s, tok.AccessToken), http.StatusOK)
	wantStatus(t, Userinfo(t, s, newAT), http.StatusOK)

	fam, ok := s.FamilyOf(newRT)
	if !ok || fam.ID != tok.Family || fam.Generation != 2 || fam.Rotations != 1 || fam.Revoked {
		t.Fatalf("family after one refresh: %+v", fam)
	}
	st := s.Stats()
	if st.RefreshCalls != 1 || st.RefreshSuccesses != 1 || st.Rotations != 1 || st.ReuseDetections != 0 {
		t.Fatalf("stats: %+v", st)
	}
	if st.Requests["token"] != 1 || st.Requests["userinfo"] != 2 || st.TokenRequests["refresh_token"] != 1 {
		t.Fatalf("request counts: %v %v", st.Requests, st.TokenRequests)
	}
	if st.Families[tok.Family].Generation != 2 {
		t.Fatalf("Stats.Families: %+v", st.Families)
	}
}

func TestReplayedRefreshTokenRevokesFamily(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{})
	tok := MustIssue(t, s, "alice")
	r1 := Refresh(t, s, tok.RefreshToken)
	wantStatus(t, r1, http.StatusOK)
	current := r1.Str("refresh_token")

	// Replay the used token: RFC 9700 §4.14.2 reuse detection.
	r2 := Refresh(t, s, tok.RefreshToken)
	wantError(t, r2, http.StatusBadRequest, "invalid_grant")

	// The whole family is gone: the current refresh token and the current
	// access token too.
	wantError(t, Refresh(t, s, current), http.StatusBadRequest, "invalid_grant")
	ui := Userinfo(t, s, r1.Str("access_token"))
	wantError(t, ui, http.StatusUnauthorized, "invalid_token")
	if !strings.Contains(ui.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("WWW-Authenticate = %q", ui.Header.Get("WWW-Authenticate"))
	}
	wantStatus(t, Userinfo(t, s, tok.AccessToken), http.StatusUnauthorized)

	st := s.Stats()
	if st.ReuseDetections != 1 || st.FamiliesRevoked != 1 || st.RefreshCalls != 3 || st.RefreshSuccesses != 1 || st.RefreshFailures != 2 {
		t.Fatalf("stats: %+v", st)
	}
	fam := st.Families[tok.Family]
	if !fam.Revoked || fam.RevokedReason != "reuse" || fam.Generation != 2 || fam.RefreshCalls != 3 || fam.Rotations != 1 {
		t.Fatalf("family: %+v", fam)
	}
	// Other families are untouched.
	other := MustIssue(t, s, "bob")
	wantStatus(t, Refresh(t, s, other.RefreshToken), http.StatusOK)
}

func TestReuseDetectionDisabled(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{DisableReuseDetection: true})
	tok := MustIssue(t, s, "alice")
	r1 := Refresh(t, s, tok.RefreshToken)
	wantStatus(t, r1, http.StatusOK)
	wantError(t, Refresh(t, s, tok.RefreshToken), http.StatusBadRequest, "invalid_grant")
	wantStatus(t, Refresh(t, s, r1.Str("refresh_token")), http.StatusOK)
	if st := s.Stats(); st.ReuseDetections != 0 || st.FamiliesRevoked != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestConcurrentRefreshIsOneRotationAndOneReuse(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{})
	tok := MustIssue(t, s, "alice")
	const n = 8
	var wg sync.WaitGroup
	results := make([]int, n)
	for i := range n {
		wg.Go(func() { results[i] = Refresh(t, s, tok.RefreshToken).Status })
	}
	wg.Wait()
	ok := 0
	for _, st := range results {
		if st == http.StatusOK {
			ok++
		}
	}
	st := s.Stats()
	if ok != 1 || st.Rotations != 1 || st.ReuseDetections != 1 || st.FamiliesRevoked != 1 || st.RefreshCalls != n ||
		st.Families[tok.Family].RefreshCalls != n {
		t.Fatalf("%d successes; stats: %+v", ok, st)
	}
}

func TestGracePeriodReplaysTheRotation(t *testing.T) {
	t.Parallel()
	clk := NewClock()
	s := MustStart(t, fakeidp.Config{Now: clk.Now, ReuseGracePeriod: 10 * time.Second, AccessTokenTTL: time.Minute})
	tok := MustIssue(t, s, "alice")
	r1 := Refresh(t, s, tok.RefreshToken)
	wantStatus(t, r1, http.StatusOK)

	clk.Advance(4 * time.Second)
	r2 := Refresh(t, s, tok.RefreshToken)
	wantStatus(t, r2, http.StatusOK)
	if r2.Str("refresh_token") != r1.Str("refresh_token") || r2.Str("access_token") != r1.Str("access_token") {
		t.Fatalf("grace replay returned another pair")
	}
	if r2.JSON["expires_in"] != 56.0 {
		t.Fatalf("grace replay expires_in = %v, want the remaining 56", r2.JSON["expires_in"])
	}
	st := s.Stats()
	if st.GraceReuses != 1 || st.ReuseDetections != 0 || st.Rotations != 1 {
		t.Fatalf("stats after grace replay: %+v", st)
	}

	// Outside the period it is a reuse again.
	clk.Advance(7 * time.Second)
	wantError(t, Refresh(t, s, tok.RefreshToken), http.StatusBadRequest, "invalid_grant")
	if st := s.Stats(); st.ReuseDetections != 1 || st.FamiliesRevoked != 1 {
		t.Fatalf("stats after late replay: %+v", st)
	}
}

func TestGitHubFlavorAnswers200BadRefreshToken(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{Flavor: fakeidp.FlavorGitHub})
	tok := MustIssue(t, s, "alice")

	// Form-encoded, as GitHub answers without Accept: application/json.
	r1 := Refresh(t, s, tok.RefreshToken)
	wantStatus(t, r1, http.StatusOK)
	if r1.Form == nil || r1.Form.Get("token_type") != "bearer" || r1.Form.Get("expires_in") != "3600" {
		t.Fatalf("GitHub success answer: %q (%s)", r1.Body, r1.Header.Get("Content-Type"))
	}
	r2 := Refresh(t, s, tok.RefreshToken)
	wantError(t, r2, http.StatusOK, "bad_refresh_token")
	if r2.Form == nil {
		t.Fatalf("GitHub error answer not form-encoded: %q", r2.Body)
	}

	// JSON when asked.
	r3 := Refresh(t, s, "fakeidp_rt_unknown", withHeader("Accept", "application/json"))
	wantError(t, r3, http.StatusOK, "bad_refresh_token")
	if r3.JSON == nil {
		t.Fatalf("GitHub error answer not JSON: %q", r3.Body)
	}
	// Other errors use GitHub's codes too.
	r4 := MustPost(t, s, fakeidp.PathToken, url.Values{"grant_type": {"authorization_code"}, "code": {"nope"}}, defaultAuth)
	wantError(t, r4, http.StatusOK, "bad_verification_code")
	r5 := Refresh(t, s, "x", withBasic(fakeidp.DefaultClientID, "wrong"))
	wantError(t, r5, http.StatusOK, "incorrect_client_credentials")
	if st := s.Stats(); st.ReuseDetections != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestRefreshTokenExpiry(t *testing.T) {
	t.Parallel()
	clk := NewClock()
	s := MustStart(t, fakeidp.Config{Now: clk.Now, RefreshTokenTTL: time.Hour})
	tok := MustIssue(t, s, "alice")
	r := Refresh(t, s, tok.RefreshToken)
	wantStatus(t, r, http.StatusOK)
	if r.JSON["refresh_token_expires_in"] != 3600.0 {
		t.Fatalf("refresh_token_expires_in: %s", r.Body)
	}
	clk.Advance(time.Hour)
	wantError(t, Refresh(t, s, r.Str("refresh_token")), http.StatusBadRequest, "invalid_grant")
	if st := s.Stats(); st.ReuseDetections != 0 || st.RefreshFailures != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestRefreshScope(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{})
	tok := MustIssue(t, s, "alice", "read", "write")
	refresh := func(rt, scope string) Resp {
		return MustPost(t, s, fakeidp.PathToken, url.Values{"grant_type": {"refresh_token"},
			"refresh_token": {rt}, "scope": {scope}}, defaultAuth)
	}
	wantError(t, refresh(tok.RefreshToken, "read admin"), http.StatusBadRequest, "invalid_grant")
	// A rejected scope does not use the token up.
	r := refresh(tok.RefreshToken, "read")
	wantStatus(t, r, http.StatusOK)
	if r.Str("scope") != "read write" {
		t.Fatalf("scope = %q", r.Str("scope"))
	}
}
