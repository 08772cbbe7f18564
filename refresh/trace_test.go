package refresh_test

import (
	"context"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/refresh"
)

// TestRefreshSpans: a refresh is one refresh.flight span, a child of the
// caller's, with the lease acquisition, the provider call and the commit
// as its children; a failed call's span says its class (not the
// provider's words); no attribute
// holds a token.
func TestRefreshSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	e := MustEnv(t, envOptions{kind: "sqlite"})
	c := e.coordinator(0, nil, func(cfg *refresh.Config) { cfg.Tracer = tp.Tracer("refresh") })
	_, seeded := e.seedExpired("u1")

	ctx, caller := tp.Tracer("test").Start(context.Background(), "caller")
	tok, err := c.Token(ctx, providerID, "u1", 0)
	caller.End()
	if err != nil {
		t.Fatal(err)
	}
	c.Close() // the flight's span has ended
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		byName[s.Name()] = s
	}
	flight := byName["refresh.flight"]
	if flight == nil || flight.Parent().SpanID() != caller.SpanContext().SpanID() {
		t.Fatalf("no refresh.flight span under the caller's: %v", spanNamesOf(rec.Ended()))
	}
	for _, name := range []string{"refresh.lease", "refresh.provider_call", "refresh.commit"} {
		s := byName[name]
		if s == nil || s.Parent().SpanID() != flight.SpanContext().SpanID() {
			t.Fatalf("%s is not a child of the flight: %v", name, spanNamesOf(rec.Ended()))
		}
		if got := attrOf(s, "tokenbroker.outcome"); got != "ok" {
			t.Errorf("%s outcome %q, want ok", name, got)
		}
	}
	if attrOf(byName["refresh.lease"], "tokenbroker.lease.won") != "true" || attrOf(byName["refresh.commit"], "tokenbroker.committed") != "true" {
		t.Errorf("lease or commit span does not say it won")
	}
	for _, s := range rec.Ended() {
		for _, kv := range s.Attributes() {
			v := kv.Value.String()
			for _, secret := range []string{seeded.AccessToken, seeded.RefreshToken, tok.AccessToken, fakeidp.DefaultClientSecret} {
				if strings.Contains(v, secret) {
					t.Errorf("span %s attribute %s holds a secret", s.Name(), kv.Key)
				}
			}
		}
	}

	// A failed call: the provider call's span carries its class.
	rec2 := tracetest.NewSpanRecorder()
	tp2 := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec2))
	t.Cleanup(func() { _ = tp2.Shutdown(context.Background()) })
	e.idp.SetFaults(fakeidp.Faults{P503: 1})
	c2 := e.coordinator(0, nil, func(cfg *refresh.Config) { cfg.Tracer = tp2.Tracer("refresh") })
	e.clock.Advance(2 * time.Hour)
	if _, err := c2.Token(context.Background(), providerID, "u1", 0); err == nil {
		t.Fatal("a 503 refreshed")
	}
	c2.Close()
	for _, s := range rec2.Ended() {
		if s.Name() == "refresh.provider_call" {
			if attrOf(s, "tokenbroker.outcome") != "not_processed" || s.Status().Description != "not_processed" {
				t.Fatalf("failed call span attributes: %v", s.Attributes())
			}
			return
		}
	}
	t.Fatalf("no provider call span: %v", spanNamesOf(rec2.Ended()))
}

func spanNamesOf(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

func attrOf(s sdktrace.ReadOnlySpan, key string) string {
	if s == nil {
		return ""
	}
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}
