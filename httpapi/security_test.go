package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apiv1"
	"github.com/tokenbroker/tokenbroker/httpapi"
	"github.com/tokenbroker/tokenbroker/httpapi/httpapitest"
)

// A key restricted to user A can read neither user B's token nor B's
// links, nor act for B in any other way.
func TestRestrictedKeyCannotReachOtherUser(t *testing.T) {
	env := MustEnv(t)
	env.MustLink(t, "user-a", demo, "alice")
	tokB := env.MustLink(t, "user-b", demo, "bob")
	keyA := env.MustKey(t, "a-only", append(platform, tokenbroker.ScopeLinksRead), []string{"user-a"}, nil)

	// A's own data is reachable.
	resp, body := env.Do(t, "GET", path("users", "user-a", "providers", demo, "token"), keyA, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("own token: %d %s", resp.StatusCode, body)
	}
	before := MustSnapshot(t, env, "user-a", "user-b")
	for _, c := range []struct{ method, path, body string }{
		{"GET", path("users", "user-b", "providers", demo, "token"), ""},
		{"GET", path("users", "user-b", "links"), ""},
		{"GET", path("users", "user-b", "links", demo), ""},
		{"PUT", path("users", "user-b", "links", demo), `{"access_token":"x"}`},
		{"DELETE", path("users", "user-b", "links", demo), ""},
		{"POST", path("users", "user-b", "links", demo, "device"), ""},
		{"GET", path("users", "user-b", "links", demo, "device", strings.Repeat("a", 43)), ""},
		{"POST", path("connect-sessions"), `{"user_id":"user-b"}`},
		{"GET", path("api-keys"), ""},
		{"GET", path("audit"), ""},
	} {
		resp, body := env.Do(t, c.method, c.path, keyA, c.body)
		MustProblem(t, resp, body, http.StatusForbidden, "forbidden")
		if bytes.Contains(body, []byte(tokB.AccessToken)) {
			t.Fatalf("%s %s: B's token in the answer", c.method, c.path)
		}
	}
	if after := MustSnapshot(t, env, "user-a", "user-b"); after != before {
		t.Fatal("forbidden requests changed the store")
	}
}

// A key restricted to a provider cannot reach another provider's link,
// and lists show only its providers.
func TestProviderRestrictedKey(t *testing.T) {
	env := MustEnv(t)
	env.MustLink(t, "alice", demo, "alice")
	env.MustLink(t, "alice", httpapitest.ProviderBare, "alice")
	key := env.MustKey(t, "bare-only", platform, nil, []string{httpapitest.ProviderBare})

	resp, body := env.Do(t, "GET", path("users", "alice", "providers", demo, "token"), key, "")
	MustProblem(t, resp, body, http.StatusForbidden, "forbidden")
	resp, body = env.Do(t, "GET", path("users", "alice", "links"), key, "")
	var ll apiv1.LinkList
	MustDecode(t, resp, body, http.StatusOK, &ll)
	if len(ll.Links) != 1 || ll.Links[0].ProviderID != httpapitest.ProviderBare {
		t.Fatalf("links %+v, want only bare", ll)
	}
	resp, body = env.Do(t, "POST", path("connect-sessions"), key, `{"user_id":"alice","providers":["demo"]}`)
	MustProblem(t, resp, body, http.StatusForbidden, "forbidden")
	// Without providers, the session is limited to the key's.
	resp, body = env.Do(t, "POST", path("connect-sessions"), key, `{"user_id":"alice"}`)
	var cs apiv1.ConnectSession
	MustDecode(t, resp, body, http.StatusCreated, &cs)
	sess, err := env.Store.GetConnectSession(context.Background(), strings.TrimPrefix(cs.URL, env.URL+"/connect/"))
	if err != nil || len(sess.Providers) != 1 || sess.Providers[0] != httpapitest.ProviderBare {
		t.Fatalf("session %+v %v, want limited to bare", sess, err)
	}
}

// Each scope gates its endpoints.
func TestScopes(t *testing.T) {
	env := MustEnv(t)
	env.MustLink(t, "alice", demo, "alice")
	linksOnly := env.MustKey(t, "links", []string{tokenbroker.ScopeLinksRead, tokenbroker.ScopeLinksWrite}, nil, nil)
	tokensOnly := env.MustKey(t, "tokens", readTokens, nil, nil)
	restrictedAdmin := env.MustKey(t, "admin-a", []string{tokenbroker.ScopeAdmin}, []string{"alice"}, nil)

	for _, c := range []struct {
		name, key, method, path, body string
	}{
		{"no tokens:read", linksOnly, "GET", path("users", "alice", "providers", demo, "token"), ""},
		{"no links:read", tokensOnly, "GET", path("users", "alice", "links"), ""},
		{"no links:read one", tokensOnly, "GET", path("users", "alice", "links", demo), ""},
		{"no links:write import", tokensOnly, "PUT", path("users", "alice", "links", demo), `{"access_token":"x"}`},
		{"no links:write delete", tokensOnly, "DELETE", path("users", "alice", "links", demo), ""},
		{"no links:write device", tokensOnly, "POST", path("users", "alice", "links", demo, "device"), ""},
		{"no links:write connect", tokensOnly, "POST", path("connect-sessions"), `{"user_id":"alice"}`},
		{"no admin keys", linksOnly, "GET", path("api-keys"), ""},
		{"no admin create", linksOnly, "POST", path("api-keys"), `{"name":"x","scopes":["admin"]}`},
		{"no admin audit", tokensOnly, "GET", path("audit"), ""},
		{"restricted admin keys", restrictedAdmin, "POST", path("api-keys"), `{"name":"x","scopes":["admin"]}`},
		{"restricted admin audit", restrictedAdmin, "GET", path("audit"), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := MustSnapshot(t, env, "alice")
			resp, body := env.Do(t, c.method, c.path, c.key, c.body)
			MustProblem(t, resp, body, http.StatusForbidden, "forbidden")
			if MustSnapshot(t, env, "alice") != before {
				t.Fatal("a forbidden request changed the store")
			}
		})
	}
	// The restricted admin key still works for its user.
	resp, body := env.Do(t, "GET", path("users", "alice", "providers", demo, "token"), restrictedAdmin, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("restricted admin on its user: %d %s", resp.StatusCode, body)
	}
}

func TestUnauthorized(t *testing.T) {
	env := MustEnv(t)
	env.MustLink(t, "alice", demo, "alice")
	good := env.MustKey(t, "reader", readTokens, nil, nil)
	wrongSecret := good[:len(good)-4] + "AAAA"
	if wrongSecret == good {
		wrongSecret = good[:len(good)-4] + "BBBB"
	}
	unknownPrefix := "tbk_zzzzzzzzzzzz" + good[16:]
	tokenPath := path("users", "alice", "providers", demo, "token")
	for name, header := range map[string]string{
		"none":           "",
		"basic":          "Basic Zm9vOmJhcg==",
		"bearer empty":   "Bearer ",
		"malformed":      "Bearer not-a-key",
		"wrong secret":   "Bearer " + wrongSecret,
		"unknown prefix": "Bearer " + unknownPrefix,
		"truncated":      "Bearer " + good[:len(good)-1],
	} {
		t.Run(name, func(t *testing.T) {
			var h []string
			if header != "" {
				h = []string{"Authorization", header}
			}
			resp, body := env.Do(t, "GET", tokenPath, "", "", h...)
			p := MustProblem(t, resp, body, http.StatusUnauthorized, "unauthorized")
			if resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("no WWW-Authenticate header")
			}
			// Every failure reads the same: no hint which part was wrong.
			if p.Detail != unauthorizedDetail(t, env) {
				t.Errorf("detail %q differs from the no-key detail", p.Detail)
			}
		})
	}
	env.Logs.AddSecret(wrongSecret, unknownPrefix)
}

// A key revoked through the API is refused at once; one revoked on the
// database directly is refused once the key cache entry expires.
func TestRevokedKeyRejected(t *testing.T) {
	env := MustEnv(t)
	env.MustLink(t, "alice", demo, "alice")
	tokenPath := path("users", "alice", "providers", demo, "token")

	// Create through the API: shown once.
	resp, body := env.Do(t, "POST", path("api-keys"), env.AdminKey, `{"name":"ci","scopes":["tokens:read"]}`)
	var created apiv1.CreatedAPIKey
	MustDecode(t, resp, body, http.StatusCreated, &created)
	env.Logs.AddSecret(created.Key)
	if !strings.HasPrefix(created.Key, "tbk_"+created.Prefix+"_") || created.ID == 0 {
		t.Fatalf("created %+v", created.APIKey)
	}
	resp, body = env.Do(t, "GET", path("api-keys"), env.AdminKey, "")
	var list apiv1.APIKeyList
	MustDecode(t, resp, body, http.StatusOK, &list)
	if len(list.Keys) != 2 || bytes.Contains(body, []byte(created.Key[16:])) || bytes.Contains(body, []byte("hash")) {
		t.Fatalf("key list %s: want two keys, no secret, no hash", body)
	}
	resp, _ = env.Do(t, "GET", tokenPath, created.Key, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("new key refused: %d", resp.StatusCode)
	}
	resp, body = env.Do(t, "DELETE", path("api-keys", itoa(created.ID)), env.AdminKey, "")
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	resp, body = env.Do(t, "GET", tokenPath, created.Key, "")
	MustProblem(t, resp, body, http.StatusUnauthorized, "unauthorized")
	resp, body = env.Do(t, "DELETE", path("api-keys", "999999"), env.AdminKey, "")
	MustProblem(t, resp, body, http.StatusNotFound, "not_found")
	resp, body = env.Do(t, "DELETE", path("api-keys", "abc"), env.AdminKey, "")
	MustProblem(t, resp, body, http.StatusBadRequest, "invalid_request")

	// Revoked on the database by another process: cached until the TTL.
	other := env.MustKey(t, "other", readTokens, nil, nil)
	resp, _ = env.Do(t, "GET", tokenPath, other, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("other key refused: %d", resp.StatusCode)
	}
	keys, _ := env.Store.ListAPIKeys(context.Background())
	if err := env.Store.RevokeAPIKey(context.Background(), keys[len(keys)-1].ID); err != nil {
		t.Fatal(err)
	}
	env.Clock.Advance(httpapi.DefaultAPIKeyCacheTTL + time.Second)
	resp, body = env.Do(t, "GET", tokenPath, other, "")
	MustProblem(t, resp, body, http.StatusUnauthorized, "unauthorized")

	evs := MustAudit(t, env, tokenbroker.AuditFilter{Action: tokenbroker.AuditAPIKeyRevoke})
	if len(evs) != 1 || !strings.Contains(evs[0].Detail, created.Prefix) {
		t.Fatalf("audit %+v, want apikey.revoke of %s", evs, created.Prefix)
	}
}

// Bad input gives 4xx and changes nothing.
func TestBadInputChangesNothing(t *testing.T) {
	env := MustEnv(t)
	env.MustLink(t, "alice", demo, "alice")
	key := env.MustKey(t, "platform", platform, nil, nil)
	big := `{"access_token":"` + strings.Repeat("a", httpapi.MaxBodyBytes) + `"}`
	linkPath := path("users", "alice", "links", demo)
	for _, c := range []struct {
		name, method, path, body string
		header                   []string
		status                   int
	}{
		{"oversize", "PUT", linkPath, big, nil, http.StatusRequestEntityTooLarge},
		{"malformed", "PUT", linkPath, `{"access_token":`, nil, 400},
		{"not an object", "PUT", linkPath, `["access_token"]`, nil, 400},
		{"unknown field", "PUT", linkPath, `{"access_token":"x","admin":true}`, nil, 400},
		{"trailing data", "PUT", linkPath, `{"access_token":"x"} {"access_token":"y"}`, nil, 400},
		{"trailing garbage", "PUT", linkPath, `{"access_token":"x"}garbage`, nil, 400},
		{"wrong type", "PUT", linkPath, `{"access_token":42}`, nil, 400},
		{"bad time", "PUT", linkPath, `{"access_token":"x","expiry":"tomorrow"}`, nil, 400},
		{"no tokens", "PUT", linkPath, `{"scopes":["a"]}`, nil, 400},
		{"empty body", "PUT", linkPath, "", []string{"Content-Type", "application/json"}, 400},
		{"form body", "PUT", linkPath, `access_token=x`, []string{"Content-Type", "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType},
		{"bad user id", "PUT", path("users", "-alice", "links", demo), `{"access_token":"x"}`, nil, 400},
		{"long user id", "GET", path("users", strings.Repeat("u", 300), "links"), "", nil, 400},
		{"bad provider id", "PUT", path("users", "alice", "links", "DEMO"), `{"access_token":"x"}`, nil, 400},
		{"unknown provider", "PUT", path("users", "alice", "links", "nope"), `{"access_token":"x"}`, nil, 404},
		{"bad key body", "POST", path("api-keys"), `{"name":"x","scopes":["root"]}`, nil, 400},
		{"key without name", "POST", path("api-keys"), `{"scopes":["admin"]}`, nil, 400},
		{"bad audit filter", "GET", path("audit") + "?since=yesterday", "", nil, 400},
		{"unknown audit param", "GET", path("audit") + "?token=x", "", nil, 400},
		{"method", "PATCH", linkPath, `{}`, nil, http.StatusMethodNotAllowed},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := MustSnapshot(t, env, "alice", "-alice")
			k := key
			if strings.Contains(c.path, "api-keys") || strings.Contains(c.path, "audit") {
				k = env.AdminKey
			}
			resp, body := env.Do(t, c.method, c.path, k, c.body, c.header...)
			code := "invalid_request"
			if c.status == 404 {
				code = "not_found"
			}
			MustProblem(t, resp, body, c.status, code)
			if c.status == http.StatusMethodNotAllowed && !strings.Contains(resp.Header.Get("Allow"), "PUT") {
				t.Errorf("Allow %q", resp.Header.Get("Allow"))
			}
			if after := MustSnapshot(t, env, "alice", "-alice"); after != before {
				t.Fatal("bad input changed the store")
			}
		})
	}
	if evs := MustAudit(t, env, tokenbroker.AuditFilter{Action: tokenbroker.AuditLinkImport}); len(evs) != 0 {
		t.Fatalf("bad input audited as imports: %+v", evs)
	}
	for _, p := range []string{"/api/v1/nope", "/nope"} {
		resp, body := env.Do(t, "GET", p, key, "")
		MustProblem(t, resp, body, http.StatusNotFound, "not_found")
	}
}

// Two keys drawn from the same random stream collide on their prefix: the
// second create is a conflict and stores nothing.
func TestConflict(t *testing.T) {
	env := MustEnv(t, httpapitest.Options{Rand: zeroReader{}})
	resp, body := env.Do(t, "POST", path("api-keys"), env.AdminKey, `{"name":"one","scopes":["tokens:read"]}`)
	var created apiv1.CreatedAPIKey
	MustDecode(t, resp, body, http.StatusCreated, &created)
	env.Logs.AddSecret(created.Key)
	before := MustSnapshot(t, env)
	resp, body = env.Do(t, "POST", path("api-keys"), env.AdminKey, `{"name":"two","scopes":["tokens:read"]}`)
	MustProblem(t, resp, body, http.StatusConflict, "conflict")
	if MustSnapshot(t, env) != before {
		t.Fatal("a conflicting create changed the store")
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// A panic in a handler is a 500 problem without the panic's value, and
// the server keeps serving.
func TestPanicRecovered(t *testing.T) {
	const secret = "fakeidp_at_panic-value-secret"
	env := MustEnv(t, httpapitest.Options{Tokens: func(tokenbroker.TokenService) tokenbroker.TokenService {
		return panicTokens(secret)
	}})
	key := env.MustKey(t, "reader", readTokens, nil, nil)
	resp, body := env.Do(t, "GET", path("users", "alice", "providers", demo, "token"), key, "")
	MustProblem(t, resp, body, http.StatusInternalServerError, "internal")
	if bytes.Contains(body, []byte(secret)) {
		t.Fatal("panic value in the answer")
	}
	resp, _ = env.Do(t, "GET", "/healthz", "", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatal("server down after a panic")
	}
	env.Logs.AddSecret(secret)
}

// panicTokens is a TokenService that panics with a secret-looking value.
type panicTokens string

func (p panicTokens) Token(context.Context, string, string, time.Duration) (*tokenbroker.Token, error) {
	panic(string(p))
}

// Every request is logged once with its pattern, status and key prefix,
// never the concrete path or query.
func TestRequestLog(t *testing.T) {
	env := MustEnv(t)
	env.MustLink(t, "log-user", demo, "alice")
	key := env.MustKey(t, "reader", readTokens, nil, nil)
	watch := env.Logs.Watch()
	resp, _ := env.Do(t, "GET", path("users", "log-user", "providers", demo, "token")+"?min_valid=61s", key, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatal(resp.Status)
	}
	for line := range watch {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "request" {
			continue
		}
		if rec["pattern"] != "GET /api/v1/users/{user_id}/providers/{provider_id}/token" ||
			rec["status"] != float64(200) || rec["key_prefix"] != key[4:16] || rec["method"] != "GET" {
			t.Fatalf("request log %s", line)
		}
		if strings.Contains(line, "log-user") || strings.Contains(line, "min_valid") {
			t.Fatalf("request log holds the concrete path or query: %s", line)
		}
		break
	}
}

func TestAuditEndpoint(t *testing.T) {
	env := MustEnv(t)
	env.MustLink(t, "alice", demo, "alice")
	env.MustLink(t, "bob", demo, "bob")
	key := env.MustKey(t, "reader", readTokens, nil, nil)
	for _, u := range []string{"alice", "alice", "bob"} {
		resp, _ := env.Do(t, "GET", path("users", u, "providers", demo, "token"), key, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatal(resp.Status)
		}
		// Each read in an interval of its own: one row each.
		if err := env.Auditor.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	var page apiv1.AuditPage
	resp, body := env.Do(t, "GET", path("audit")+"?user=alice&action=token.read", env.AdminKey, "")
	MustDecode(t, resp, body, http.StatusOK, &page)
	if len(page.Events) != 2 || page.Events[0].UserID != "alice" {
		t.Fatalf("audit page %+v, want alice's two reads", page)
	}
	resp, body = env.Do(t, "GET", path("audit")+"?action=token.read&limit=2", env.AdminKey, "")
	MustDecode(t, resp, body, http.StatusOK, &page)
	if len(page.Events) != 2 || page.NextBeforeID == 0 {
		t.Fatalf("first page %+v, want 2 and a next id", page)
	}
	resp, body = env.Do(t, "GET", path("audit")+"?action=token.read&limit=2&before_id="+itoa(page.NextBeforeID), env.AdminKey, "")
	var page2 apiv1.AuditPage
	MustDecode(t, resp, body, http.StatusOK, &page2)
	if len(page2.Events) != 1 || page2.NextBeforeID != 0 {
		t.Fatalf("second page %+v, want the last event", page2)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	resp, body = env.Do(t, "GET", path("audit")+"?since="+future, env.AdminKey, "")
	MustDecode(t, resp, body, http.StatusOK, &page)
	if len(page.Events) != 0 {
		t.Fatalf("events since the future: %+v", page.Events)
	}
}

func unauthorizedDetail(t *testing.T, env *httpapitest.Env) string {
	t.Helper()
	resp, body := env.Do(t, "GET", path("providers"), "", "")
	return MustProblem(t, resp, body, http.StatusUnauthorized, "unauthorized").Detail
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
