package tracing_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/httpapi/httpapitest"
	"github.com/tokenbroker/tokenbroker/internal/tracing"
)

// BenchmarkTokenEndpoint measures the token endpoint in process (cached
// key, valid token, audit record, JSON answer) untraced, as serve runs
// without OTEL_EXPORTER_OTLP_ENDPOINT, and traced: wrapped by [tracing.Handler]
// with the SDK's batching processor and the redacting exporter in front
// of one that discards, so the figure is the process's own cost of a
// server span, not the network's.
func BenchmarkTokenEndpoint(b *testing.B) {
	env := httpapitest.MustStart(b, httpapitest.Options{})
	env.MustLink(b, "alice", httpapitest.ProviderDemo, "alice")
	key := env.MustKey(b, "reader", []string{tokenbroker.ScopeTokensRead}, nil, nil)
	req := httptest.NewRequest("GET", "/api/v1/users/alice/providers/"+httpapitest.ProviderDemo+"/token", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	run := func(b *testing.B, h http.Handler) {
		b.ReportAllocs()
		for b.Loop() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req.Clone(req.Context()))
			if w.Code != http.StatusOK {
				b.Fatal(w.Code)
			}
		}
	}
	b.Run("untraced", func(b *testing.B) { run(b, env.API) })
	b.Run("traced", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracing.Redact(tracetest.NewNoopExporter())))
		defer tp.Shutdown(context.Background())
		run(b, tracing.Handler(env.API, tp))
	})
}
