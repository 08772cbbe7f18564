package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// authLines returns the "authentication failed" lines logged since the
// capture held n lines, decoded.
func authLines(t *testing.T, n int) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range logs.Lines()[n:] {
		if !strings.Contains(l, `"msg":"authentication failed"`) {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// A failed authentication is logged at warn with its reason, the key
// prefix it named and the client address, never the key; it is counted
// by reason; the log is rate-limited, and says how many lines it left out.
func TestAuthFailureLogAndMetric(t *testing.T) {
	env := MustEnv(t)
	key := env.MustKey(t, "reader", readTokens, nil, nil)
	prefix := key[len("tbk_") : len("tbk_")+12]
	wrong := key[:len(key)-4] + "AAAA"
	if wrong == key {
		wrong = key[:len(key)-4] + "BBBB"
	}
	env.Logs.AddSecret(wrong, wrong[len("tbk_")+13:])
	tokenPath := path("users", "alice", "providers", demo, "token")

	n := len(logs.Lines())
	resp, body := env.Do(t, "GET", tokenPath, wrong, "")
	MustProblem(t, resp, body, http.StatusUnauthorized, "unauthorized")
	lines := authLines(t, n)
	if len(lines) != 1 {
		t.Fatalf("%d auth failure lines, want 1", len(lines))
	}
	l := lines[0]
	if l["level"] != "WARN" || l["reason"] != "wrong_secret" || l["key_prefix"] != prefix || !strings.HasPrefix(l["client"].(string), "127.0.0.1:") {
		t.Errorf("log line %v", l)
	}
	if got := authFailures(t, env, "wrong_secret"); got != 1 {
		t.Errorf("wrong_secret failures %v, want 1", got)
	}

	// Each reason.
	revoked := env.MustKey(t, "gone", readTokens, nil, nil)
	keys, err := env.Store.ListAPIKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Store.RevokeAPIKey(t.Context(), keys[len(keys)-1].ID); err != nil {
		t.Fatal(err)
	}
	unknown := "tbk_zzzzzzzzzzzz_" + strings.Repeat("A", 43)
	n = len(logs.Lines())
	for _, c := range []struct{ key, reason string }{
		{"", "missing"},
		{"tbk_short", "malformed"},
		{unknown, "unknown_key"},
		{revoked, "revoked_key"},
		{"a.b.c", "jwt_not_configured"},
	} {
		resp, body := env.Do(t, "GET", tokenPath, c.key, "")
		MustProblem(t, resp, body, http.StatusUnauthorized, "unauthorized")
		if got := authFailures(t, env, c.reason); got != 1 {
			t.Errorf("%s failures %v, want 1", c.reason, got)
		}
	}
	var reasons []string
	for _, l := range authLines(t, n) {
		reasons = append(reasons, l["reason"].(string))
	}
	if strings.Join(reasons, ",") != "missing,malformed,unknown_key,revoked_key,jwt_not_configured" {
		t.Errorf("logged reasons %v", reasons)
	}

	// 6 logged so far in this window; the limit is 20 a minute.
	n = len(logs.Lines())
	for range 30 {
		resp, body := env.Do(t, "GET", tokenPath, wrong, "")
		MustProblem(t, resp, body, http.StatusUnauthorized, "unauthorized")
	}
	if got := len(authLines(t, n)); got != 14 {
		t.Errorf("%d lines for 30 failures after 6, want 14 (20 a minute)", got)
	}
	if got := authFailures(t, env, "wrong_secret"); got != 31 {
		t.Errorf("wrong_secret failures %v, want 31: the counter counts every failure", got)
	}
	env.Clock.Advance(time.Minute)
	n = len(logs.Lines())
	resp, body = env.Do(t, "GET", tokenPath, wrong, "")
	MustProblem(t, resp, body, http.StatusUnauthorized, "unauthorized")
	lines = authLines(t, n)
	if len(lines) != 1 || lines[0]["suppressed_before"] != float64(16) {
		t.Errorf("first line of the next minute %v, want suppressed_before 16", lines)
	}
}
