package httpapi_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"

	"github.com/tokenbroker/tokenbroker/apiv1"
	"github.com/tokenbroker/tokenbroker/httpapi"
)

// TestTokenJSONMatchesMarshal: the token answer's hand-written encoder
// writes the very bytes json.Marshal writes (with map members sorted),
// and refuses what it refuses.
func TestTokenJSONMatchesMarshal(t *testing.T) {
	at := time.Date(2026, 11, 30, 7, 8, 9, 123456789, time.UTC)
	cases := map[string]apiv1.Token{
		"typical":     {AccessToken: "gho_abc123", TokenType: "Bearer", Expiry: at, Scopes: []string{"repo", "read:user"}},
		"no expiry":   {AccessToken: "x", TokenType: "Bearer"},
		"nil scopes":  {AccessToken: "x", TokenType: "bearer", Expiry: at.Truncate(time.Second)},
		"no scopes":   {AccessToken: "x", TokenType: "Bearer", Scopes: []string{}},
		"whole ms":    {AccessToken: "x", TokenType: "Bearer", Expiry: at.Truncate(time.Millisecond)},
		"escapes":     {AccessToken: "a\"b\\c\n\t\x00\x1f<>&\u2028\u2029é😀/", TokenType: "mac"},
		"extra":       {AccessToken: "x", TokenType: "Bearer", Extra: map[string]string{"z": "1", "a": "2", "id_token": "e.y.j", "é": "<"}},
		"empty extra": {AccessToken: "", TokenType: "", Extra: map[string]string{}},
		"year 9999":   {AccessToken: "x", TokenType: "Bearer", Expiry: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)},
	}
	for name, tok := range cases {
		want, err := json.Marshal(&tok, json.Deterministic(true))
		if err != nil {
			t.Fatalf("%s: json.Marshal: %v", name, err)
		}
		got, err := httpapi.AppendTokenJSON(nil, &tok)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s (%v)\nwant %s", name, got, err, want)
		}
	}
	for name, tok := range map[string]apiv1.Token{
		"invalid utf-8":  {AccessToken: "a\xffb", TokenType: "Bearer"},
		"invalid scope":  {AccessToken: "a", TokenType: "Bearer", Scopes: []string{"\xc0"}},
		"year past 9999": {AccessToken: "x", TokenType: "Bearer", Expiry: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if _, err := json.Marshal(&tok); err == nil {
			t.Fatalf("%s: json.Marshal accepts it", name)
		}
		if got, err := httpapi.AppendTokenJSON(nil, &tok); err == nil {
			t.Errorf("%s: encoded %s, want an error", name, got)
		}
	}
}

// TestTokenPath: ServeHTTP routes only plain token paths itself; every
// other path, near misses included, is the mux's.
func TestTokenPath(t *testing.T) {
	for path, want := range map[string][2]string{
		"/api/v1/users/alice/providers/github/token":    {"alice", "github"},
		"/api/v1/users/a.b@c/providers/git-hub_2/token": {"a.b@c", "git-hub_2"},
		"/api/v1/users/alice/providers/github/token/":   {},
		"/api/v1/users/alice/providers//token":          {},
		"/api/v1/users//providers/github/token":         {},
		"/api/v1/users/a/b/providers/github/token":      {},
		"/api/v1/users/alice/providers/git/hub/token":   {},
		"/api/v1/users/../providers/github/token":       {},
		"/api/v1/users/alice/providers/./token":         {},
		"/api/v1/users/alice/links/github":              {},
		"/api/v1/users/alice/providers/github/tokens":   {},
		"/api/v1/users/alice/provider/github/token":     {},
		"/api/v2/users/alice/providers/github/token":    {},
		"/api/v1/users/providers/token":                 {},
		"/api/v1/users/alice/providers/providers/token": {"alice", "providers"},
	} {
		u, p, ok := httpapi.TokenPath(path)
		if ok != (want[0] != "") || u != want[0] || p != want[1] {
			t.Errorf("tokenPath(%q) = %q, %q, %v; want %q", path, u, p, ok, want)
		}
	}
}

// TestTokenRouteLikeMux: a token request answers the same whether
// ServeHTTP routes it itself or the mux does (an escaped path, HEAD).
func TestTokenRouteLikeMux(t *testing.T) {
	env := MustEnv(t)
	env.MustLink(t, "alice", demo, "alice")
	key := env.MustKey(t, "reader", readTokens, nil, nil)
	plain := path("users", "alice", "providers", demo, "token")
	escaped := strings.Replace(plain, "alice", "%61lice", 1)
	r1, b1 := env.Do(t, "GET", plain, key, "")
	r2, b2 := env.Do(t, "GET", escaped, key, "")
	if r1.StatusCode != http.StatusOK || r2.StatusCode != http.StatusOK || !bytes.Equal(b1, b2) {
		t.Fatalf("plain %d %s\nescaped %d %s", r1.StatusCode, b1, r2.StatusCode, b2)
	}
	for _, h := range []string{"Content-Type", "Cache-Control", "Pragma", "X-Content-Type-Options"} {
		if r1.Header.Get(h) != r2.Header.Get(h) || r1.Header.Get(h) == "" {
			t.Errorf("%s: %q and %q", h, r1.Header.Get(h), r2.Header.Get(h))
		}
	}
	// Bad ids and queries are refused alike.
	for _, p := range []string{path("users", "al ice", "providers", demo, "token"), plain + "?min_valid=x", plain + "?nope=1"} {
		r, b := env.Do(t, "GET", p, key, "")
		if r.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d %s", p, r.StatusCode, b)
		}
	}
}
