package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tokenbroker/tokenbroker"
)

// BenchmarkTokenEndpoint measures the hot path in process (no network):
// key check from the cache, a valid token from the coordinator, one audit
// record, the JSON answer. Request logging is on, into the capture.
func BenchmarkTokenEndpoint(b *testing.B) {
	env := MustEnv(b)
	env.MustLink(b, "alice", demo, "alice")
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
