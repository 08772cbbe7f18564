package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/httpapi"
	"github.com/tokenbroker/tokenbroker/httpapi/httpapitest"
)

var fuzzMethods = []string{"GET", "PUT", "POST", "DELETE", "PATCH", "HEAD"}

// FuzzAPI sends the API any method, path, query, body and Content-Type,
// with one of four credentials (an admin key, a key limited to reading
// alice's tokens, a malformed key, none), against a real environment that
// holds a link for alice. It checks: the server answers (no panic, no 500);
// every error is a problem document whose status and code agree; no error
// changes the store (links and API keys), except the documented outcome of
// a refresh that the provider refused; no refresh token, API key or token
// of the request's body appears in a log line, nor in an error answer.
func FuzzAPI(f *testing.F) {
	logs := httpapitest.NewLogCapture()
	env := httpapitest.MustStart(f, httpapitest.Options{Logs: logs})
	restricted := env.MustKey(f, "reader", []string{tokenbroker.ScopeTokensRead}, []string{"alice"}, nil)
	keys := []string{env.AdminKey, restricted, "tbk_notakey", ""}
	ctx := context.Background()

	f.Fuzz(func(t *testing.T, method, credential uint8, path, query, contentType, body string) {
		// The fuzzer may delete alice's link; each input starts with one.
		if _, err := env.Store.GetLink(ctx, "alice", httpapitest.ProviderDemo); tokenbroker.IsNotFound(err) {
			env.MustLink(t, "alice", httpapitest.ProviderDemo, "alice")
		}
		target := "/api/v1/" + path
		if query != "" {
			target += "?" + query
		}
		req, err := http.NewRequest(fuzzMethods[int(method)%len(fuzzMethods)], "http://broker.test"+target, strings.NewReader(body))
		if err != nil {
			return // not a request a client can send
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if key := keys[int(credential)%len(keys)]; key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		before := MustSnapshot(t, env, "alice", "bob")
		logs.Drain()

		rec := httptest.NewRecorder()
		env.API.ServeHTTP(rec, req)
		resp := rec.Result()
		answer := rec.Body.String()

		if resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("%s %s: status %d: %s", req.Method, target, resp.StatusCode, answer)
		}
		var problem httpapi.Problem
		if resp.StatusCode >= 400 && req.Method != "HEAD" {
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("%s %s: status %d with Content-Type %q", req.Method, target, resp.StatusCode, ct)
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &problem); err != nil {
				t.Fatalf("problem body %q: %v", answer, err)
			}
			if problem.Status != resp.StatusCode || problem.Code == "" || problem.Type != httpapi.ProblemTypePrefix+problem.Code {
				t.Fatalf("problem %+v for status %d", problem, resp.StatusCode)
			}
		}
		if resp.StatusCode >= 400 && !refreshOutcome(problem) {
			if after := MustSnapshot(t, env, "alice", "bob"); after != before {
				t.Fatalf("%s %s refused with %d %s changed the store:\nbefore %s\nafter  %s", req.Method, target, resp.StatusCode, problem.Code, before, after)
			}
		}

		secrets := append(bodySecrets(body), keys[:2]...)
		if l, err := env.Store.GetLink(ctx, "alice", httpapitest.ProviderDemo); err == nil {
			secrets = append(secrets, l.Token.RefreshToken)
		}
		for _, line := range logs.Drain() {
			for _, s := range append(secrets, httpapitest.SecretMarkers...) {
				if s != "" && strings.Contains(line, s) && !strings.Contains(target, s) {
					t.Fatalf("%s %s: a secret reached the log: %s", req.Method, target, line)
				}
			}
		}
		if resp.StatusCode >= 400 {
			for _, s := range secrets {
				if strings.Contains(answer, s) && !strings.Contains(target, s) {
					t.Fatalf("%s %s: the error answer repeats a secret: %s", req.Method, target, answer)
				}
			}
		}
	})
}

// refreshOutcome reports whether p answers a refresh whose outcome the
// store records: a link marked for reconnection, a provider that failed.
func refreshOutcome(p httpapi.Problem) bool {
	return p.Code == tokenbroker.EREAUTHREQUIRED || p.Code == tokenbroker.EPROVIDERUNAVAILABLE
}

// bodySecrets returns the string values of at least 8 characters that a
// JSON body carries under a member whose name says token or secret.
func bodySecrets(body string) []string {
	var v any
	if json.Unmarshal([]byte(body), &v) != nil {
		return nil
	}
	var out []string
	var walk func(name string, v any)
	walk = func(name string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, vv := range x {
				walk(k, vv)
			}
		case []any:
			for _, vv := range x {
				walk(name, vv)
			}
		case string:
			n := strings.ToLower(name)
			if len(x) >= 8 && (strings.Contains(n, "token") || strings.Contains(n, "secret")) {
				out = append(out, x)
			}
		}
	}
	walk("", v)
	return out
}
