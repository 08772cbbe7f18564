package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/httpapi/httpapitest"
)

// BenchmarkTokenEndpoint measures the hot path in process (no network):
// key check from the cache, a valid token from the coordinator, one audit
// record, the JSON answer. Request logging is on, into the capture.
func BenchmarkTokenEndpoint(b *testing.B) {
	env := MustEnv(b)
	env.MustLink(b, "alice", demo, "alice")
	benchToken(b, env)
}

// BenchmarkTokenEndpointAPIOnly is the same with a TokenService that
// answers from memory: the cost of the API layer alone (auth, audit
// record, JSON, request log).
func BenchmarkTokenEndpointAPIOnly(b *testing.B) {
	tok := &tokenbroker.Token{AccessToken: "fixed-access-token", TokenType: "Bearer", Scopes: []string{"read"}}
	env := MustEnv(b, httpapitest.Options{Tokens: func(tokenbroker.TokenService) tokenbroker.TokenService {
		return fixedTokens{tok}
	}})
	benchToken(b, env)
}

// benchToken asks env for alice's demo token with a tokens:read key, b.N times.
func benchToken(b *testing.B, env *httpapitest.Env) {
	key := env.MustKey(b, "reader", []string{tokenbroker.ScopeTokensRead}, nil, nil)
	req := httptest.NewRequest("GET", path("users", "alice", "providers", demo, "token"), nil)
	req.Header.Set("Authorization", "Bearer "+key)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		env.API.ServeHTTP(w, req.Clone(req.Context()))
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}

type fixedTokens struct{ t *tokenbroker.Token }

func (f fixedTokens) Token(context.Context, string, string, time.Duration) (*tokenbroker.Token, error) {
	return f.t, nil
}
