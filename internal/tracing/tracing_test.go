package tracing_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenbroker/tokenbroker/internal/tracing"
)

func TestScrub(t *testing.T) {
	for in, want := range map[string]string{
		"https://api.example.com/token":                                "https://api.example.com/token",
		"https://api.example.com/cb?code=abc&state=def":                "https://api.example.com/cb?REDACTED",
		`Post "https://u:pw@idp.example/token?x=1": dial tcp: refused`: `Post "https://idp.example/token?REDACTED": dial tcp: refused`,
		"no url here ?a=b":                                             "no url here ?a=b",
		"http://127.0.0.1:9/hooks?token=t#frag":                        "http://127.0.0.1:9/hooks?REDACTED#frag",
	} {
		if got := tracing.Scrub(in); got != want {
			t.Errorf("Scrub(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRedactExporter(t *testing.T) {
	mem := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracing.Redact(mem)))
	defer tp.Shutdown(context.Background())
	_, span := tp.Tracer("t").Start(context.Background(), "GET /connect/{session}", trace.WithAttributes(
		attribute.String("url.path", "/connect/session-secret"),
		attribute.String("url.query", "code=code-secret"),
		attribute.String("url.full", "https://idp.example/userinfo?access_token=token-secret"),
		attribute.StringSlice("list", []string{"https://a.example/?k=slice-secret"}),
		attribute.Int("http.response.status_code", 200),
	))
	span.RecordError(errors.New(`Get "https://idp.example/x?key=event-secret": timeout`))
	span.SetStatus(codes.Error, `Get "https://idp.example/x?key=status-secret": timeout`)
	span.End()

	spans := mem.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans exported", len(spans))
	}
	s := spans[0]
	var dump []string
	for _, kv := range s.Attributes {
		dump = append(dump, string(kv.Key)+"="+kv.Value.String())
	}
	for _, e := range s.Events {
		for _, kv := range e.Attributes {
			dump = append(dump, string(kv.Key)+"="+kv.Value.String())
		}
	}
	dump = append(dump, s.Status.Description, s.Name)
	text := strings.Join(dump, "\n")
	for _, secret := range []string{"session-secret", "code-secret", "token-secret", "slice-secret", "event-secret", "status-secret"} {
		if strings.Contains(text, secret) {
			t.Errorf("exported span holds %s:\n%s", secret, text)
		}
	}
	for _, keep := range []string{"url.full=https://idp.example/userinfo?REDACTED", "http.response.status_code=200", "GET /connect/{session}"} {
		if !strings.Contains(text, keep) {
			t.Errorf("exported span lacks %q:\n%s", keep, text)
		}
	}
}

func TestSetup(t *testing.T) {
	ctx := context.Background()
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	tp, on, shutdown, err := tracing.Setup(ctx, env(), "v1", "r1")
	if err != nil || on {
		t.Fatalf("no endpoint: on=%v err=%v; want off", on, err)
	}
	if _, span := tp.Tracer("t").Start(ctx, "x"); span.IsRecording() {
		t.Fatal("the no-op provider records")
	}
	shutdown(ctx)
	if _, on, _, _ := tracing.Setup(ctx, env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9", "OTEL_SDK_DISABLED", "true"), "v1", "r1"); on {
		t.Fatal("OTEL_SDK_DISABLED=true still traces")
	}
	_, _, _, err = tracing.Setup(ctx, env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), "v1", "r1")
	if err == nil || !strings.Contains(err.Error(), "http/protobuf") {
		t.Fatalf("grpc protocol: %v", err)
	}
	tp, on, shutdown, err = tracing.Setup(ctx, env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"), "v1", "r1")
	if err != nil || !on {
		t.Fatalf("with an endpoint: on=%v err=%v", on, err)
	}
	if _, span := tp.Tracer("t").Start(ctx, "x"); !span.IsRecording() {
		t.Fatal("the SDK provider does not record")
	}
	sctx, cancel := context.WithTimeout(ctx, 0) // nothing listens: do not wait to flush
	defer cancel()
	_ = shutdown(sctx)
}
