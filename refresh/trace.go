package refresh

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/tokenbroker/tokenbroker"
)

// The coordinator's spans: one per flight (refresh.flight, a child of the
// span of the caller that started it), with children for each lease
// acquisition (refresh.lease), each wait for another holder (refresh.wait),
// the provider call (refresh.provider_call, the parent of the provider HTTP
// client's span) and the commit (refresh.commit). Attributes name the
// provider, the link's numeric id and generation, and outcomes: never a
// token, a key or a user's identity. Errors are recorded by their class or
// code, not their text, which may quote a provider's answer.
const (
	spanFlight       = "refresh.flight"
	spanLease        = "refresh.lease"
	spanWait         = "refresh.wait"
	spanProviderCall = "refresh.provider_call"
	spanCommit       = "refresh.commit"
)

// noopTracer is the tracer of a coordinator configured without one.
var noopTracer = noop.NewTracerProvider().Tracer("")

// span starts a span named name for link l.
func (c *Coordinator) span(ctx context.Context, name string, l *tokenbroker.Link, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return c.cfg.Tracer.Start(ctx, name, trace.WithAttributes(append([]attribute.KeyValue{
		attribute.String("tokenbroker.provider", l.ProviderID),
		attribute.Int64("tokenbroker.link.id", l.ID),
		attribute.Int64("tokenbroker.link.generation", l.Generation),
	}, attrs...)...))
}

// endSpan ends s with err's outcome as an attribute: "ok", a provider
// failure's class (rejected, client, not_processed, uncertain), or the
// error's code; an error also sets the status, without the error's text.
func endSpan(s trace.Span, err error) {
	outcome := "ok"
	if err != nil {
		outcome = tokenbroker.ErrorCode(err)
		if pe, ok := errors.AsType[*tokenbroker.ProviderError](err); ok && pe.Class != "" {
			outcome = string(pe.Class)
		}
		s.SetStatus(codes.Error, outcome)
	}
	s.SetAttributes(attribute.String("tokenbroker.outcome", outcome))
	s.End()
}

// endLeaseSpan ends an acquisition's span with what it found.
func endLeaseSpan(s trace.Span, g *tokenbroker.LeaseGrant, err error) {
	if g != nil {
		s.SetAttributes(attribute.Bool("tokenbroker.lease.won", g.Won),
			attribute.Bool("tokenbroker.lease.takeover", g.Won && g.PreviousOwner != ""),
			attribute.Int("tokenbroker.lease.attempt", g.Attempt))
	}
	endSpan(s, err)
}
