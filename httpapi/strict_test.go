package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker"
)

// TestStrictJSON: request bodies are decoded with encoding/json/v2
// semantics. A member name in another case, a duplicate member and a body
// without Content-Type: application/json are refused, change nothing, and
// a bad member is named in the problem's detail.
func TestStrictJSON(t *testing.T) {
	env := MustEnv(t)
	env.MustLink(t, "alice", demo, "alice")
	key := env.MustKey(t, "platform", platform, nil, nil)
	linkPath := path("users", "alice", "links", demo)
	for _, c := range []struct {
		name, body string
		header     []string
		status     int
		detail     string // the problem's detail must hold it
	}{
		{"member name in another case", `{"Access_Token":"x"}`, nil, 400, `"Access_Token"`},
		{"duplicate member", `{"access_token":"x","access_token":"y"}`, nil, 400, `duplicate member "access_token"`},
		{"no content type", `{"access_token":"x"}`, []string{"Content-Type", ""}, http.StatusUnsupportedMediaType, "application/json"},
		{"text content type", `{"access_token":"x"}`, []string{"Content-Type", "text/plain"}, http.StatusUnsupportedMediaType, "application/json"},
		{"bad expiry", `{"access_token":"x","expiry":"tomorrow"}`, nil, 400, `member "expiry"`},
		{"bad scopes", `{"access_token":"x","scopes":"a b"}`, nil, 400, `member "scopes"`},
		{"null body", `null`, nil, 400, "JSON object"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := MustSnapshot(t, env, "alice")
			resp, body := env.Do(t, "PUT", linkPath, key, c.body, c.header...)
			p := MustProblem(t, resp, body, c.status, "invalid_request")
			if !strings.Contains(p.Detail, c.detail) {
				t.Errorf("detail %q does not hold %q", p.Detail, c.detail)
			}
			if strings.Contains(p.Detail, "tomorrow") {
				t.Errorf("detail %q quotes the value", p.Detail)
			}
			if after := MustSnapshot(t, env, "alice"); after != before {
				t.Fatal("bad input changed the store")
			}
		})
	}
}

// TestUnknownQueryParameters: every endpoint refuses a query parameter it
// does not take, and a parameter given twice, with 400.
func TestUnknownQueryParameters(t *testing.T) {
	env := MustEnv(t)
	env.MustLink(t, "alice", demo, "alice")
	for _, c := range []struct{ method, path string }{
		{"GET", path("users", "alice", "providers", demo, "token") + "?foo=1"},
		{"GET", path("users", "alice", "providers", demo, "token") + "?min_valid=1&min_valid=2"},
		{"GET", path("users", "alice", "links") + "?foo=1"},
		{"GET", path("users", "alice", "links", demo) + "?foo=1"},
		{"GET", path("providers") + "?all=true"},
		{"GET", path("api-keys") + "?foo=1"},
		{"GET", path("audit") + "?limit=1&limit=2"},
		{"DELETE", path("users", "alice", "links", demo) + "?force=1"},
	} {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			before := MustSnapshot(t, env, "alice")
			resp, body := env.Do(t, c.method, c.path, env.AdminKey, "")
			MustProblem(t, resp, body, 400, "invalid_request")
			if after := MustSnapshot(t, env, "alice"); after != before {
				t.Fatal("a refused request changed the store")
			}
		})
	}
}

// TestAPIKeyIDsAreStrict: "+1", "01" and other spellings of 1 do not name
// key 1 (the package's first key, the admin key), and a key cannot revoke
// itself without allow_self=true.
func TestAPIKeyIDsAreStrict(t *testing.T) {
	env := MustEnv(t)
	other := env.MustKey(t, "other admin", []string{tokenbroker.ScopeAdmin}, nil, nil)
	for _, id := range []string{"%2B1", "01", "1.0", "0x1", "%201", "1%20"} {
		before := MustSnapshot(t, env)
		resp, body := env.Do(t, "DELETE", path("api-keys")+"/"+id, other, "")
		MustProblem(t, resp, body, 400, "invalid_request")
		if after := MustSnapshot(t, env); after != before {
			t.Fatalf("DELETE /api-keys/%s changed the keys", id)
		}
	}
	// The admin key is key 1 and still works.
	resp, body := env.Do(t, "GET", path("api-keys"), env.AdminKey, "")
	if resp.StatusCode != 200 {
		t.Fatalf("admin key after the refused revocations: %d %s", resp.StatusCode, body)
	}
	// Revoking the key that makes the request needs allow_self=true.
	resp, body = env.Do(t, "DELETE", path("api-keys", "1"), env.AdminKey, "")
	MustProblem(t, resp, body, http.StatusConflict, "conflict")
	if resp, body := env.Do(t, "GET", path("api-keys"), env.AdminKey, ""); resp.StatusCode != 200 {
		t.Fatalf("the admin key revoked itself without allow_self: %d %s", resp.StatusCode, body)
	}
	resp, body = env.Do(t, "DELETE", path("api-keys", "1")+"?allow_self=true", env.AdminKey, "")
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke self with allow_self: %d %s", resp.StatusCode, body)
	}
	resp, body = env.Do(t, "GET", path("api-keys"), env.AdminKey, "")
	MustProblem(t, resp, body, http.StatusUnauthorized, "unauthorized")
}

// TestFreeTextRefusesControlCharacters: an API key name with a control
// character, NUL or a bidirectional override is refused (it would reach an
// admin's terminal through `apikeys list`), and so are such scopes and
// token types on import.
func TestFreeTextRefusesControlCharacters(t *testing.T) {
	env := MustEnv(t)
	key := env.MustKey(t, "platform", platform, nil, nil)
	for _, name := range []string{`ci\u001b[31m`, `ci\u0000`, `ci\u202eevil`, `ci\nnext`, `ci\u2066x`, `ci\u0085`} {
		before := MustSnapshot(t, env)
		resp, body := env.Do(t, "POST", path("api-keys"), env.AdminKey, `{"name":"`+name+`","scopes":["tokens:read"]}`)
		MustProblem(t, resp, body, 400, "invalid_request")
		if after := MustSnapshot(t, env); after != before {
			t.Fatalf("name %s: a key was created", name)
		}
	}
	for _, b := range []string{
		`{"access_token":"x","token_type":"Bearer\u001b[2J"}`,
		`{"access_token":"x","scopes":["read\u202e"]}`,
		`{"access_token":"x","extra":{"k\u0000":"v"}}`,
	} {
		before := MustSnapshot(t, env, "alice")
		resp, body := env.Do(t, "PUT", path("users", "alice", "links", demo), key, b)
		MustProblem(t, resp, body, 400, "invalid_request")
		if after := MustSnapshot(t, env, "alice"); after != before {
			t.Fatalf("%s: imported", b)
		}
	}
}
