package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/httpapi"
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

// BenchmarkTokenEndpointCached is the same with the token cache on, as
// serve runs it: the token comes from memory, the store is not read.
func BenchmarkTokenEndpointCached(b *testing.B) {
	env := MustEnv(b, httpapitest.Options{TokenCacheTTL: time.Minute})
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

// BenchmarkTokenCredential compares, side by side in one run, the API
// layer's cost (TokenService answering from memory) with each credential:
// an API key (cached, one SHA-256), a workload JWT as bearer (an RS256
// signature check per request, keys cached), and the RFC 8693 exchange
// (the same check, plus form parsing).
func BenchmarkTokenCredential(b *testing.B) {
	tok := &tokenbroker.Token{AccessToken: "fixed-access-token", TokenType: "Bearer", Scopes: []string{"read"}}
	env := MustEnv(b, httpapitest.Options{Trusts: workloadTrusts, Tokens: func(tokenbroker.TokenService) tokenbroker.TokenService {
		return fixedTokens{tok}
	}})
	key := env.MustKey(b, "reader", []string{tokenbroker.ScopeTokensRead}, nil, nil)
	c := ciJob("alice")
	c.TTL = time.Hour // the clock stands still; it stays valid
	jwt := env.MintWorkloadJWT(b, c)
	get := func(cred string) *http.Request {
		req := httptest.NewRequest("GET", path("users", "alice", "providers", demo, "token"), nil)
		req.Header.Set("Authorization", "Bearer "+cred)
		return req
	}
	form := url.Values{"grant_type": {httpapi.GrantTypeTokenExchange}, "subject_token": {jwt},
		"subject_token_type": {httpapi.TokenTypeJWT}, "audience": {demo}}.Encode()
	run := func(b *testing.B, mk func() *http.Request) {
		b.ReportAllocs()
		for b.Loop() {
			w := httptest.NewRecorder()
			env.API.ServeHTTP(w, mk())
			if w.Code != http.StatusOK {
				b.Fatal(w.Code, w.Body.String())
			}
		}
	}
	keyReq, jwtReq := get(key), get(jwt)
	b.Run("api_key", func(b *testing.B) { run(b, func() *http.Request { return keyReq.Clone(keyReq.Context()) }) })
	b.Run("workload_jwt", func(b *testing.B) { run(b, func() *http.Request { return jwtReq.Clone(jwtReq.Context()) }) })
	b.Run("token_exchange", func(b *testing.B) {
		run(b, func() *http.Request {
			req := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader(form))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return req
		})
	})
}
