// Package tracing sets up OpenTelemetry traces for `tokenbroker serve`:
// exported by OTLP over HTTP when the standard OTEL_EXPORTER_OTLP_ENDPOINT
// (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, off otherwise. The
// exporter and the batching read the other standard OTEL_* variables
// themselves (headers, timeout, OTEL_TRACES_SAMPLER, OTEL_BSP_*,
// OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES).
//
// No secret reaches an exported span: every span passes through a
// redacting exporter that removes the query string and user info of any
// URL in any string (attributes, event attributes, status), and drops the
// raw request path of server spans (it can hold a connect session or
// device id; the span's name carries the route pattern instead). Headers
// are never recorded. Outgoing requests to providers and webhook
// receivers carry no trace context: trace ids stay inside.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Enabled reports whether getenv configures an OTLP traces endpoint.
func Enabled(getenv func(string) string) bool {
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup returns the tracer provider of a serve process, whether it
// records anything, and a function that flushes and stops it. Without an
// OTLP endpoint in getenv (or with OTEL_SDK_DISABLED=true) it is a no-op
// provider. Only the http/protobuf protocol is supported.
func Setup(ctx context.Context, getenv func(string) string, version, instance string) (tp trace.TracerProvider, on bool, shutdown func(context.Context) error, err error) {
	if !Enabled(getenv) || getenv("OTEL_SDK_DISABLED") == "true" {
		return noop.NewTracerProvider(), false, func(context.Context) error { return nil }, nil
	}
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := getenv(k); p != "" {
			if p != "http/protobuf" {
				return nil, false, nil, fmt.Errorf("invalid %s=%q: tokenbroker exports traces with http/protobuf only", k, p)
			}
			break
		}
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, false, nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(
			semconv.ServiceName("tokenbroker"),
			semconv.ServiceVersion(version),
			semconv.ServiceInstanceID(instance),
		),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, false, nil, fmt.Errorf("trace resource: %w", err)
	}
	sdk := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(Redact(exp)),
		sdktrace.WithResource(res),
	)
	return sdk, true, sdk.Shutdown, nil
}

// Handler wraps the server's handler: a server span per request, named
// by its route pattern once routed, continuing a caller's W3C trace
// context (traceparent). Scrapes and health checks (/metrics, /healthz,
// /readyz) make no span.
func Handler(h http.Handler, tp trace.TracerProvider) http.Handler {
	return otelhttp.NewHandler(h, "tokenbroker",
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithFilter(func(r *http.Request) bool {
			switch r.URL.Path {
			case "/metrics", "/healthz", "/readyz":
				return false
			}
			return true
		}),
		otelhttp.WithPropagators(propagation.TraceContext{}),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			if r.Pattern != "" {
				return r.Pattern
			}
			return r.Method
		}),
	)
}

// Transport wraps base (nil: http.DefaultTransport) with client spans.
// It injects no trace context into the requests: they leave tokenbroker
// (providers, webhook receivers), and trace ids are nobody else's
// business.
func Transport(base http.RoundTripper, tp trace.TracerProvider) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return otelhttp.NewTransport(base,
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(propagation.NewCompositeTextMapPropagator()),
	)
}

// Redact returns exp with every span scrubbed of secrets before export
// (see the package documentation).
func Redact(exp sdktrace.SpanExporter) sdktrace.SpanExporter { return redactor{exp} }

type redactor struct{ sdktrace.SpanExporter }

func (r redactor) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	out := make([]sdktrace.ReadOnlySpan, len(spans))
	for i, s := range spans {
		out[i] = redactSpan(s)
	}
	return r.SpanExporter.ExportSpans(ctx, out)
}

// redacted is a span with scrubbed attributes, events and status; every
// other method is the original's.
type redacted struct {
	sdktrace.ReadOnlySpan
	attrs  []attribute.KeyValue
	events []sdktrace.Event
	status sdktrace.Status
}

func (s redacted) Attributes() []attribute.KeyValue { return s.attrs }
func (s redacted) Events() []sdktrace.Event         { return s.events }
func (s redacted) Status() sdktrace.Status          { return s.status }

// dropped are attribute keys never exported: the raw path and query of a
// request (ids and codes travel in them; the route is the span's name).
var dropped = map[attribute.Key]bool{
	"url.path":    true,
	"url.query":   true,
	"http.target": true,
}

func redactSpan(s sdktrace.ReadOnlySpan) sdktrace.ReadOnlySpan {
	r := redacted{ReadOnlySpan: s, attrs: scrubAttrs(s.Attributes()), status: s.Status()}
	r.status.Description = Scrub(r.status.Description)
	for _, e := range s.Events() {
		e.Attributes = scrubAttrs(e.Attributes)
		r.events = append(r.events, e)
	}
	return r
}

func scrubAttrs(in []attribute.KeyValue) []attribute.KeyValue {
	out := make([]attribute.KeyValue, 0, len(in))
	for _, kv := range in {
		if dropped[kv.Key] {
			continue
		}
		switch kv.Value.Type() {
		case attribute.STRING:
			kv.Value = attribute.StringValue(Scrub(kv.Value.AsString()))
		case attribute.STRINGSLICE:
			ss := kv.Value.AsStringSlice()
			for i := range ss {
				ss[i] = Scrub(ss[i])
			}
			kv.Value = attribute.StringSliceValue(ss)
		}
		out = append(out, kv)
	}
	return out
}

var (
	urlQuery    = regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.-]*://[^\s"'?#]*)\?[^\s"'#]*`)
	urlUserinfo = regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.-]*://)[^\s"'/@]*@`)
)

// Scrub removes the query string and user info of every URL in s.
func Scrub(s string) string {
	s = urlUserinfo.ReplaceAllString(s, "${1}")
	return urlQuery.ReplaceAllString(s, "${1}?REDACTED")
}
