package httpapi_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apikey"
	"github.com/tokenbroker/tokenbroker/apiv1"
	"github.com/tokenbroker/tokenbroker/crypt"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/httpapi/httpapitest"
)

const demo = httpapitest.ProviderDemo

var (
	readTokens = []string{tokenbroker.ScopeTokensRead}
	platform   = []string{tokenbroker.ScopeTokensRead, tokenbroker.ScopeLinksRead, tokenbroker.ScopeLinksWrite}
)

func TestTokenFetch(t *testing.T) {
	env := MustEnv(t)
	issued := env.MustLink(t, "alice", demo, "alice")
	key := env.MustKey(t, "reader", readTokens, nil, nil)

	resp, body := env.Do(t, "GET", path("users", "alice", "providers", demo, "token"), key, "")
	var tok apiv1.Token
	MustDecode(t, resp, body, http.StatusOK, &tok)
	if tok.AccessToken != issued.AccessToken || tok.TokenType != "Bearer" || tok.Expiry.IsZero() {
		t.Fatalf("token %+v, want the issued access token with an expiry", tok)
	}
	if !tok.Expiry.Equal(issued.Expiry) {
		t.Errorf("expiry %v, want %v", tok.Expiry, issued.Expiry)
	}
	if strings.Contains(string(body), issued.RefreshToken) || strings.Contains(string(body), "refresh") {
		t.Errorf("token answer mentions the refresh token: %s", body)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	if p := resp.Header.Get("Pragma"); p != "no-cache" {
		t.Errorf("Pragma %q, want no-cache", p)
	}
	evs := MustAudit(t, env, tokenbroker.AuditFilter{Action: tokenbroker.AuditTokenRead})
	if len(evs) != 1 || evs[0].UserID != "alice" || evs[0].ProviderID != demo || evs[0].Outcome != "ok" || !strings.HasPrefix(evs[0].Actor, "key:") {
		t.Fatalf("audit %+v, want one token.read by a key", evs)
	}
}

// TestAuditCountsTokenReads: token reads within one flush interval are
// one audit entry per caller, user, provider and outcome, whose count is
// the number of answers; GET /api/v1/audit shows it with the first and
// the last read.
func TestAuditCountsTokenReads(t *testing.T) {
	env := MustEnv(t)
	env.MustLink(t, "alice", demo, "alice")
	key := env.MustKey(t, "reader", readTokens, nil, nil)
	other := env.MustKey(t, "other", readTokens, nil, nil)
	// Hold the batcher's interval open: everything below is one interval.
	if err := env.Auditor.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 7 {
		resp, _ := env.Do(t, "GET", path("users", "alice", "providers", demo, "token"), key, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	env.Do(t, "GET", path("users", "alice", "providers", demo, "token"), other, "")
	env.Do(t, "GET", path("users", "bob", "providers", demo, "token"), key, "") // not_found
	if err := env.Auditor.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	resp, body := env.Do(t, "GET", path("audit")+"?action=token.read", env.AdminKey, "")
	var page apiv1.AuditPage
	MustDecode(t, resp, body, http.StatusOK, &page)
	var total int64
	for _, e := range page.Events {
		total += e.Count
		if e.LastAt != e.Time || e.FirstAt.After(e.LastAt) {
			t.Errorf("entry %+v: first_at after last_at, or last_at is not time", e)
		}
	}
	// The flush interval is 50 ms in the test environment, so the reads
	// may span more than one interval; the counts always add up.
	if total != 9 {
		t.Fatalf("token.read entries count %d reads, want 9:\n%s", total, body)
	}
	byKey := map[string]int64{}
	for _, e := range page.Events {
		byKey[e.Actor+" "+e.UserID+" "+e.Outcome] += e.Count
	}
	prefix, _, _ := apikey.Parse(key)
	if len(byKey) != 3 || byKey["key:"+prefix+" alice ok"] != 7 || byKey["key:"+prefix+" bob not_found"] != 1 {
		t.Errorf("counts by caller, user and outcome: %v", byKey)
	}
}

// An expired token is refreshed through the coordinator; min_valid asks
// for a token valid long enough.
func TestTokenRefreshAndMinValid(t *testing.T) {
	env := MustEnv(t)
	issued := env.MustLink(t, "alice", demo, "alice")
	key := env.MustKey(t, "reader", readTokens, nil, nil)

	env.Clock.Advance(fakeidp.DefaultAccessTokenTTL + time.Minute)
	resp, body := env.Do(t, "GET", path("users", "alice", "providers", demo, "token"), key, "")
	var tok apiv1.Token
	MustDecode(t, resp, body, http.StatusOK, &tok)
	if tok.AccessToken == issued.AccessToken {
		t.Fatal("expired token handed out")
	}
	env.Logs.AddSecret(tok.AccessToken)
	if !tok.Expiry.After(env.Clock.Now()) {
		t.Fatalf("refreshed token expires %v, before now %v", tok.Expiry, env.Clock.Now())
	}

	// The fresh token is valid 1h: 30m is served from the link, as
	// seconds or as a duration, without another refresh.
	for _, mv := range []string{"1800", "30m"} {
		resp, body = env.Do(t, "GET", path("users", "alice", "providers", demo, "token")+"?min_valid="+mv, key, "")
		var again apiv1.Token
		MustDecode(t, resp, body, http.StatusOK, &again)
		if again.AccessToken != tok.AccessToken {
			t.Errorf("min_valid=%s: a token valid long enough was refreshed again", mv)
		}
	}
	if n := env.IDP.Stats().RefreshCalls; n != 1 {
		t.Errorf("provider saw %d refreshes, want 1", n)
	}
	// More than the provider ever gives cannot be satisfied.
	resp, body = env.Do(t, "GET", path("users", "alice", "providers", demo, "token")+"?min_valid=2h", key, "")
	MustProblem(t, resp, body, http.StatusBadRequest, "invalid_request")
	for _, bad := range []string{"-5s", "25h", "abc", "1e9", "99999999"} {
		resp, body := env.Do(t, "GET", path("users", "alice", "providers", demo, "token")+"?min_valid="+bad, key, "")
		MustProblem(t, resp, body, http.StatusBadRequest, "invalid_request")
	}
}

// After the provider revokes the token family, the token endpoint answers
// reauth_required with a connect URL, and the link is marked.
func TestReauthRequiredAfterFamilyRevoked(t *testing.T) {
	env := MustEnv(t)
	MustBreakLink(t, env, env.MustLink(t, "alice", demo, "alice"))

	writer := env.MustKey(t, "platform", platform, nil, nil)
	resp, body := env.Do(t, "GET", path("users", "alice", "providers", demo, "token"), writer, "")
	p := MustProblem(t, resp, body, http.StatusConflict, "reauth_required")
	if !strings.HasPrefix(p.ConnectURL, env.URL+"/connect/") {
		t.Fatalf("connect_url %q, want %s/connect/<id>", p.ConnectURL, env.URL)
	}
	id := strings.TrimPrefix(p.ConnectURL, env.URL+"/connect/")
	sess, err := env.Store.GetConnectSession(context.Background(), id)
	if err != nil {
		t.Fatalf("connect session of connect_url: %v", err)
	}
	if sess.UserID != "alice" || len(sess.Providers) != 1 || sess.Providers[0] != demo {
		t.Errorf("session %+v, want alice/demo", sess)
	}
	l, err := env.Store.GetLink(context.Background(), "alice", demo)
	if err != nil {
		t.Fatal(err)
	}
	if l.State != tokenbroker.LinkReauthRequired || l.FailureReason == "" {
		t.Errorf("link state %s reason %q, want reauth_required with a reason", l.State, l.FailureReason)
	}

	// A key that may not create connect sessions learns how to get one.
	reader := env.MustKey(t, "reader", readTokens, nil, nil)
	resp, body = env.Do(t, "GET", path("users", "alice", "providers", demo, "token"), reader, "")
	p = MustProblem(t, resp, body, http.StatusConflict, "reauth_required")
	if p.ConnectURL != "" || !strings.Contains(p.Detail, "/api/v1/connect-sessions") {
		t.Errorf("problem %+v: want no connect_url and a pointer to connect-sessions", p)
	}

	// The link status shows it too.
	resp, body = env.Do(t, "GET", path("users", "alice", "links", demo), writer, "")
	var st apiv1.Link
	MustDecode(t, resp, body, http.StatusOK, &st)
	if st.State != "reauth_required" || st.FailureReason == "" {
		t.Errorf("link status %+v", st)
	}
}

// A transiently failing provider with an expired token gives 503 with
// Retry-After, and the link stays active.
func TestProviderUnavailable(t *testing.T) {
	env := MustEnv(t)
	env.MustLink(t, "alice", demo, "alice")
	env.IDP.SetFaults(fakeidp.Faults{P503: 1, Target: fakeidp.TargetRefresh})
	env.Clock.Advance(fakeidp.DefaultAccessTokenTTL + time.Minute)
	key := env.MustKey(t, "reader", readTokens, nil, nil)

	resp, body := env.Do(t, "GET", path("users", "alice", "providers", demo, "token"), key, "")
	p := MustProblem(t, resp, body, http.StatusServiceUnavailable, "provider_unavailable")
	if resp.Header.Get("Retry-After") == "" || p.RetryAfter <= 0 {
		t.Errorf("Retry-After %q retry_after %d, want both", resp.Header.Get("Retry-After"), p.RetryAfter)
	}
	l, err := env.Store.GetLink(context.Background(), "alice", demo)
	if err != nil || l.State != tokenbroker.LinkActive {
		t.Fatalf("link %v %v, want still active", l, err)
	}
}

func TestImport(t *testing.T) {
	env := MustEnv(t)
	key := env.MustKey(t, "platform", platform, nil, nil)
	pair, err := env.IDP.IssueToken("bob", "read")
	if err != nil {
		t.Fatal(err)
	}
	env.Logs.AddSecret(pair.AccessToken, pair.RefreshToken)
	body, _ := json.Marshal(map[string]any{
		"access_token": pair.AccessToken, "refresh_token": pair.RefreshToken,
		"token_type": "Bearer", "expiry": pair.Expiry, "scopes": []string{"read"},
	})
	resp, rb := env.Do(t, "PUT", path("users", "u-bob", "links", demo), key, string(body))
	var st apiv1.Link
	MustDecode(t, resp, rb, http.StatusOK, &st)
	if st.State != "active" || st.AccountLogin != "bob" || st.AccountID != "1002" || st.Generation != 1 || !st.HasRefreshToken {
		t.Fatalf("imported link %+v, want active, validated as bob (1002), generation 1", st)
	}
	if strings.Contains(string(rb), pair.AccessToken) || strings.Contains(string(rb), pair.RefreshToken) {
		t.Fatal("link status holds a token")
	}
	raw, err := env.Store.GetLink(context.Background(), "u-bob", demo)
	if err != nil || !crypt.IsSealed(raw.Token.AccessToken) || !crypt.IsSealed(raw.Token.RefreshToken) {
		t.Fatalf("imported tokens not sealed at rest: %v", err)
	}
	resp, rb = env.Do(t, "GET", path("users", "u-bob", "providers", demo, "token"), key, "")
	var tok apiv1.Token
	MustDecode(t, resp, rb, http.StatusOK, &tok)
	if tok.AccessToken != pair.AccessToken {
		t.Fatal("token endpoint does not hand out the imported token")
	}
	if evs := MustAudit(t, env, tokenbroker.AuditFilter{Action: tokenbroker.AuditLinkImport}); len(evs) != 1 || evs[0].Outcome != "ok" {
		t.Fatalf("audit %+v, want one link.import", evs)
	}

	// A token the provider rejects is refused, and nothing is stored.
	before := MustSnapshot(t, env, "u-bob", "u-carol")
	resp, rb = env.Do(t, "PUT", path("users", "u-carol", "links", demo), key,
		`{"access_token":"not-a-real-token","refresh_token":"nope","expiry":"`+time.Now().Add(time.Hour).UTC().Format(time.RFC3339)+`"}`)
	MustProblem(t, resp, rb, http.StatusBadRequest, "invalid_request")
	if after := MustSnapshot(t, env, "u-bob", "u-carol"); after != before {
		t.Fatal("a rejected import changed the store")
	}

	// A provider that cannot validate imports without account details.
	resp, rb = env.Do(t, "PUT", path("users", "u-bob", "links", httpapitest.ProviderBare), key,
		`{"refresh_token":"`+pair.RefreshToken+`"}`)
	var bare apiv1.Link
	MustDecode(t, resp, rb, http.StatusOK, &bare)
	if bare.AccountID != "" || bare.ProviderID != httpapitest.ProviderBare || !bare.Expiry.IsZero() {
		t.Fatalf("bare import %+v", bare)
	}
}

func TestDeleteRevokes(t *testing.T) {
	env := MustEnv(t)
	key := env.MustKey(t, "platform", platform, nil, nil)
	issued := env.MustLink(t, "alice", demo, "alice")

	resp, body := env.Do(t, "DELETE", path("users", "alice", "links", demo), key, "")
	var dr apiv1.DeleteResult
	MustDecode(t, resp, body, http.StatusOK, &dr)
	if !dr.Deleted || dr.Revocation != "revoked" {
		t.Fatalf("delete %+v, want deleted and revoked", dr)
	}
	if fam, ok := env.IDP.FamilyOf(issued.RefreshToken); !ok || !fam.Revoked {
		t.Fatalf("family %+v at the provider, want revoked", fam)
	}
	if n := env.IDP.Stats().Revocations; n != 1 {
		t.Errorf("provider saw %d revocations, want 1", n)
	}
	resp, body = env.Do(t, "GET", path("users", "alice", "links", demo), key, "")
	MustProblem(t, resp, body, http.StatusNotFound, "not_found")
	resp, body = env.Do(t, "DELETE", path("users", "alice", "links", demo), key, "")
	MustProblem(t, resp, body, http.StatusNotFound, "not_found")

	// A provider without revocation: deleted, not_supported.
	env.MustLink(t, "alice", httpapitest.ProviderBare, "alice")
	resp, body = env.Do(t, "DELETE", path("users", "alice", "links", httpapitest.ProviderBare), key, "")
	MustDecode(t, resp, body, http.StatusOK, &dr)
	if !dr.Deleted || dr.Revocation != "not_supported" {
		t.Fatalf("delete %+v, want deleted, not_supported", dr)
	}

	// The provider is down: the link is removed anyway and that is said.
	env.MustLink(t, "alice", demo, "alice")
	env.IDP.SetFaults(fakeidp.Faults{P503: 1, Target: fakeidp.TargetAll})
	resp, body = env.Do(t, "DELETE", path("users", "alice", "links", demo), key, "")
	MustDecode(t, resp, body, http.StatusOK, &dr)
	if !dr.Deleted || !strings.HasPrefix(dr.Revocation, "failed: ") {
		t.Fatalf("delete %+v, want deleted with a failed revocation", dr)
	}
	if _, err := env.Store.GetLink(context.Background(), "alice", demo); !tokenbroker.IsNotFound(err) {
		t.Fatalf("link still there after delete with the provider down: %v", err)
	}
	evs := MustAudit(t, env, tokenbroker.AuditFilter{Action: tokenbroker.AuditLinkDelete})
	if len(evs) != 3 || !strings.Contains(evs[0].Detail, "failed") {
		t.Fatalf("audit %+v, want three link.delete, the newest failed", evs)
	}
}

func TestDeviceFlow(t *testing.T) {
	env := MustEnv(t)
	key := env.MustKey(t, "platform", platform, nil, nil)
	devPath := path("users", "dave", "links", demo, "device")

	resp, body := env.Do(t, "POST", devPath, key, "")
	var start apiv1.DeviceStart
	MustDecode(t, resp, body, http.StatusCreated, &start)
	if len(start.ID) != 43 || start.UserCode == "" || start.VerificationURI == "" || start.Interval < 1 || !start.ExpiresAt.After(env.Clock.Now()) {
		t.Fatalf("device start %+v", start)
	}
	if strings.Contains(string(body), fakeidp.PrefixDeviceCode) {
		t.Fatal("the device code left the broker")
	}
	// At rest the device code is sealed.
	raw, err := env.Store.GetAuthRequest(context.Background(), start.ID)
	if err != nil || !crypt.IsSealed(raw.Secret) || raw.Kind != tokenbroker.AuthRequestDevice || raw.UserID != "dave" {
		t.Fatalf("stored device request %+v %v: want a sealed device code", raw, err)
	}
	poll := func() apiv1.DeviceStatus {
		t.Helper()
		resp, body := env.Do(t, "GET", devPath+"/"+start.ID, key, "")
		var pr apiv1.DeviceStatus
		MustDecode(t, resp, body, http.StatusOK, &pr)
		return pr
	}
	if pr := poll(); pr.Status != apiv1.DevicePending {
		t.Fatalf("first poll %+v, want pending", pr)
	}
	if pr := poll(); pr.Status != apiv1.DeviceSlowDown {
		t.Fatalf("immediate second poll %+v, want slow_down", pr)
	}
	if err := env.IDP.ApproveDevice(start.UserCode, "carol"); err != nil {
		t.Fatal(err)
	}
	env.Clock.Advance(time.Minute)
	pr := poll()
	if pr.Status != apiv1.DeviceComplete || pr.Link == nil || pr.Link.AccountLogin != "carol" || pr.Link.State != "active" {
		t.Fatalf("poll after approval %+v, want complete with carol's link", pr)
	}
	// The flow is over.
	resp, body = env.Do(t, "GET", devPath+"/"+start.ID, key, "")
	MustProblem(t, resp, body, http.StatusNotFound, "not_found")

	resp, body = env.Do(t, "GET", path("users", "dave", "providers", demo, "token"), key, "")
	var tok apiv1.Token
	MustDecode(t, resp, body, http.StatusOK, &tok)
	env.Logs.AddSecret(tok.AccessToken)
	if evs := MustAudit(t, env, tokenbroker.AuditFilter{Action: tokenbroker.AuditLinkCreate}); len(evs) != 1 || evs[0].UserID != "dave" {
		t.Fatalf("audit %+v, want one link.create for dave", evs)
	}

	// Denied.
	resp, body = env.Do(t, "POST", devPath, key, "")
	MustDecode(t, resp, body, http.StatusCreated, &start)
	if err := env.IDP.DenyDevice(start.UserCode); err != nil {
		t.Fatal(err)
	}
	env.Clock.Advance(time.Minute)
	if pr := poll(); pr.Status != apiv1.DeviceDenied {
		t.Fatalf("poll after denial %+v, want denied", pr)
	}

	// Another user's path cannot poll the flow.
	resp, body = env.Do(t, "POST", devPath, key, "")
	MustDecode(t, resp, body, http.StatusCreated, &start)
	resp, body = env.Do(t, "GET", path("users", "eve", "links", demo, "device", start.ID), key, "")
	MustProblem(t, resp, body, http.StatusNotFound, "not_found")

	// A provider without the device grant.
	resp, body = env.Do(t, "POST", path("users", "dave", "links", httpapitest.ProviderBare, "device"), key, "")
	MustProblem(t, resp, body, http.StatusBadRequest, "invalid_request")
}

func TestConnectSessions(t *testing.T) {
	env := MustEnv(t, httpapitest.Options{ReturnURLAllowList: []string{"https://app.example.com/settings"}})
	key := env.MustKey(t, "platform", platform, nil, nil)

	resp, body := env.Do(t, "POST", path("connect-sessions"), key,
		`{"user_id":"alice","providers":["demo"],"return_url":"https://app.example.com/settings/links"}`)
	var cs apiv1.ConnectSession
	MustDecode(t, resp, body, http.StatusCreated, &cs)
	if !strings.HasPrefix(cs.URL, env.URL+"/connect/") || !cs.ExpiresAt.After(time.Now()) {
		t.Fatalf("session %+v", cs)
	}
	sess, err := env.Store.GetConnectSession(context.Background(), strings.TrimPrefix(cs.URL, env.URL+"/connect/"))
	if err != nil {
		t.Fatal(err)
	}
	if sess.UserID != "alice" || sess.ReturnURL != "https://app.example.com/settings/links" || sess.CreatedBy != key[4:16] {
		t.Errorf("stored session %+v", sess)
	}

	// Without providers: every provider.
	resp, body = env.Do(t, "POST", path("connect-sessions"), key, `{"user_id":"alice"}`)
	MustDecode(t, resp, body, http.StatusCreated, &cs)

	for name, req := range map[string]string{
		"off allow-list":      `{"user_id":"alice","return_url":"https://evil.example.com/settings"}`,
		"prefix trick":        `{"user_id":"alice","return_url":"https://app.example.com/settings-evil"}`,
		"host suffix trick":   `{"user_id":"alice","return_url":"https://app.example.com.evil.com/settings"}`,
		"userinfo trick":      `{"user_id":"alice","return_url":"https://app.example.com@evil.com/settings"}`,
		"dot segments":        `{"user_id":"alice","return_url":"https://app.example.com/settings/../admin"}`,
		"scheme-relative":     `{"user_id":"alice","return_url":"//evil.example.com/settings"}`,
		"javascript":          `{"user_id":"alice","return_url":"javascript:alert(1)"}`,
		"unknown provider":    `{"user_id":"alice","providers":["nope"]}`,
		"invalid provider id": `{"user_id":"alice","providers":["NOPE!"]}`,
		"invalid user":        `{"user_id":""}`,
	} {
		t.Run(name, func(t *testing.T) {
			resp, body := env.Do(t, "POST", path("connect-sessions"), key, req)
			MustProblem(t, resp, body, http.StatusBadRequest, "invalid_request")
		})
	}
}

func TestTokenNotFound(t *testing.T) {
	env := MustEnv(t)
	key := env.MustKey(t, "reader", readTokens, nil, nil)
	resp, body := env.Do(t, "GET", path("users", "nobody", "providers", demo, "token"), key, "")
	if p := MustProblem(t, resp, body, http.StatusNotFound, "not_found"); !strings.Contains(p.Detail, "connect-sessions") {
		t.Errorf("detail %q does not say how to connect", p.Detail)
	}
	resp, body = env.Do(t, "GET", path("users", "nobody", "providers", "nope", "token"), key, "")
	if p := MustProblem(t, resp, body, http.StatusNotFound, "not_found"); !strings.Contains(p.Detail, "no provider") {
		t.Errorf("detail %q does not name the missing provider", p.Detail)
	}
}

func TestProviders(t *testing.T) {
	env := MustEnv(t)
	key := env.MustKey(t, "reader", readTokens, nil, nil)
	resp, body := env.Do(t, "GET", path("providers"), key, "")
	var pl apiv1.ProviderList
	MustDecode(t, resp, body, http.StatusOK, &pl)
	if len(pl.Providers) != 2 || pl.Providers[0].ID == "" {
		t.Fatalf("providers %+v, want demo and bare", pl)
	}
	if strings.Contains(string(body), fakeidp.DefaultClientSecret) {
		t.Fatal("provider list holds the client secret")
	}
	restricted := env.MustKey(t, "bare-only", readTokens, nil, []string{httpapitest.ProviderBare})
	resp, body = env.Do(t, "GET", path("providers"), restricted, "")
	MustDecode(t, resp, body, http.StatusOK, &pl)
	if len(pl.Providers) != 1 || pl.Providers[0].ID != httpapitest.ProviderBare {
		t.Fatalf("restricted key sees %+v, want only bare", pl)
	}
}

func TestHealth(t *testing.T) {
	env := MustEnv(t)
	resp, body := env.Do(t, "GET", "/healthz", "", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz %d %s", resp.StatusCode, body)
	}
	resp, body = env.Do(t, "GET", "/readyz", "", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"ready"`) {
		t.Fatalf("readyz %d %s", resp.StatusCode, body)
	}
	// A closed database is not ready, and API calls are internal errors
	// with a generic detail.
	key := env.MustKey(t, "platform", platform, nil, nil)
	env.Store.Close()
	resp, body = env.Do(t, "GET", "/readyz", "", "")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz on a closed database: %d %s", resp.StatusCode, body)
	}
	resp, body = env.Do(t, "GET", path("users", "alice", "links"), key, "")
	p := MustProblem(t, resp, body, http.StatusInternalServerError, "internal")
	if strings.Contains(p.Detail, "sql") || strings.Contains(p.Detail, "closed") {
		t.Errorf("internal detail leaks the cause: %q", p.Detail)
	}
}

// User ids may hold . _ @ : + -, raw or percent-encoded in the path.
func TestUserIDCharacters(t *testing.T) {
	env := MustEnv(t)
	const user = "ci:alice+1@example.com"
	issued := env.MustLink(t, user, demo, "alice")
	key := env.MustKey(t, "reader", readTokens, []string{user}, nil)
	for _, p := range []string{
		path("users", user, "providers", demo, "token"),
		path("users", "ci%3Aalice%2B1%40example.com", "providers", demo, "token"),
	} {
		resp, body := env.Do(t, "GET", p, key, "")
		var tok apiv1.Token
		MustDecode(t, resp, body, http.StatusOK, &tok)
		if tok.AccessToken != issued.AccessToken {
			t.Fatalf("%s: wrong token", p)
		}
	}
	// An encoded slash is not a path separator and not a valid id.
	resp, body := env.Do(t, "GET", path("users", "a%2Fb", "links"), env.AdminKey, "")
	MustProblem(t, resp, body, http.StatusBadRequest, "invalid_request")
}

// TestImportOverLiveLinkRevokesReplacedGrant: importing over an active
// link holding another grant revokes that grant at the provider once the
// new link is stored, says so in the answer and audits it; re-importing
// the same grant revokes nothing.
func TestImportOverLiveLinkRevokesReplacedGrant(t *testing.T) {
	env := MustEnv(t)
	key := env.MustKey(t, "platform", platform, nil, nil)
	first := env.MustLink(t, "alice", demo, "alice")
	second, err := env.IDP.IssueToken("alice", "read")
	if err != nil {
		t.Fatal(err)
	}
	env.Logs.AddSecret(second.AccessToken, second.RefreshToken)
	body, _ := json.Marshal(map[string]any{"access_token": second.AccessToken, "refresh_token": second.RefreshToken, "expiry": second.Expiry})
	for i, want := range []string{"revoked", ""} { // the second import is of the same grant
		resp, rb := env.Do(t, "PUT", path("users", "alice", "links", demo), key, string(body))
		var res apiv1.ImportResult
		MustDecode(t, resp, rb, http.StatusOK, &res)
		if res.ReplacedRevocation != want || res.State != "active" {
			t.Fatalf("import %d: %+v, want replaced_revocation %q", i+1, res, want)
		}
	}
	if fam, ok := env.IDP.FamilyOf(first.RefreshToken); !ok || !fam.Revoked {
		t.Fatalf("the replaced grant at the provider: %+v, want revoked", fam)
	}
	if fam, ok := env.IDP.FamilyOf(second.RefreshToken); !ok || fam.Revoked {
		t.Fatalf("the imported grant at the provider: %+v, want live", fam)
	}
	evs := MustAudit(t, env, tokenbroker.AuditFilter{Action: tokenbroker.AuditLinkImport})
	if len(evs) != 2 || !slices.ContainsFunc(evs, func(e tokenbroker.AuditEvent) bool {
		return e.Detail == "replaces an active grant"
	}) {
		t.Fatalf("audit %+v, want two imports, one replacing an active grant", evs)
	}
	evs = MustAudit(t, env, tokenbroker.AuditFilter{Action: tokenbroker.AuditReplacedGrantRevoke})
	if len(evs) != 1 || evs[0].Detail != "replaced grant revocation: revoked" {
		t.Fatalf("audit %+v, want the replaced grant's revocation", evs)
	}
}

// TestReauthRequiredReusesConnectSession: a caller asking again for a
// broken link's token gets the same connect URL while the session is open
// and unused, instead of a new session row per answer; another key gets
// its own, and a session a browser has opened is not handed out again.
func TestReauthRequiredReusesConnectSession(t *testing.T) {
	env := MustEnv(t)
	MustBreakLink(t, env, env.MustLink(t, "alice", demo, "alice"))
	tokenPath := path("users", "alice", "providers", demo, "token")
	connectURL := func(key string) string {
		t.Helper()
		resp, body := env.Do(t, "GET", tokenPath, key, "")
		return MustProblem(t, resp, body, http.StatusConflict, "reauth_required").ConnectURL
	}
	writer := env.MustKey(t, "platform", platform, nil, nil)
	first := connectURL(writer)
	for range 3 {
		if again := connectURL(writer); again != first {
			t.Fatalf("connect_url changed while the session is open: %s, then %s", first, again)
		}
	}
	if n := countRows(t, env, "connect_sessions"); n != 1 {
		t.Fatalf("%d connect sessions after four reauth_required answers to one key, want 1", n)
	}
	other := connectURL(env.MustKey(t, "other", platform, nil, nil))
	if other == first {
		t.Fatal("two keys share a connect session")
	}
	// A browser opens the URL: the session is claimed, the next answer
	// carries a new one.
	resp, err := env.Server.Client().Get(first)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("opening the connect URL: %d", resp.StatusCode)
	}
	if next := connectURL(writer); next == first || next == other {
		t.Fatalf("connect_url %s handed out again after a browser opened it", next)
	}
}

// countRows counts the rows of table in env's SQLite database.
func countRows(t *testing.T, env *httpapitest.Env, table string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+env.Store.Path()+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCallerGoneIsNotAServerError: a caller that gives up while its token
// is being refreshed is not a server error: nothing is logged at error, the
// request log says 499, and the refresh goes on and is committed.
func TestCallerGoneIsNotAServerError(t *testing.T) {
	logs := httpapitest.NewLogCapture()
	env := httpapitest.MustStart(t, httpapitest.Options{Logs: logs,
		IDP: fakeidp.Config{Faults: fakeidp.Faults{Latency: 300 * time.Millisecond}}})
	env.MustLink(t, "alice", demo, "alice")
	key := env.MustKey(t, "reader", readTokens, nil, nil)
	env.Clock.Advance(2 * time.Hour)
	watch := logs.Watch()

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", env.URL+path("users", "alice", "providers", demo, "token"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if resp, err := env.Server.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the request finished (%d) before its caller gave up", resp.StatusCode)
	}
	timeout := time.After(20 * time.Second)
	for done := false; !done; {
		select {
		case line := <-watch:
			done = strings.Contains(line, `"status":499`)
		case <-timeout:
			t.Fatalf("no request log line with status 499:\n%s", strings.Join(logs.Lines(), "\n"))
		}
	}
	for _, line := range logs.Lines() {
		if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, "internal error") {
			t.Fatalf("a caller that went away was logged as a server error: %s", line)
		}
	}
	// The refresh it started went on, detached, and was committed.
	resp, body := env.Do(t, "GET", path("users", "alice", "providers", demo, "token"), key, "")
	var tok apiv1.Token
	MustDecode(t, resp, body, http.StatusOK, &tok)
	if n := env.IDP.Stats().RefreshCalls; n != 1 {
		t.Fatalf("provider refresh calls = %d, want 1 (the abandoned caller's refresh was committed)", n)
	}
}
