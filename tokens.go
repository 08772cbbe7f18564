package tokenbroker

import (
	"context"
	"time"
)

// TokenService hands out valid access tokens. The refresh coordinator
// (package refresh) implements it with the protocol of docs/design.md; the HTTP
// API's token endpoint calls it and nothing else.
type TokenService interface {
	// Token returns a token for userID's link to providerID whose access
	// token is valid for at least minValid (0: simply not expired),
	// refreshing it if needed. It is safe for concurrent use and may block
	// until ctx is done while a refresh is under way.
	//
	// Errors: [ENOTFOUND] (no link, unknown provider), a
	// [*ReauthRequiredError] when the grant is broken, a
	// [*ProviderUnavailableError] when the provider fails transiently and no
	// valid token is at hand.
	Token(ctx context.Context, providerID, userID string, minValid time.Duration) (*Token, error)
}

// Auditor records audit events. Record never blocks on I/O: events are
// batched and written in the background (see package audit), so the hot
// path never writes synchronously once per request.
type Auditor interface {
	Record(ev AuditEvent)
}

// AuditorFunc adapts a function to [Auditor].
type AuditorFunc func(ev AuditEvent)

// Record calls f(ev).
func (f AuditorFunc) Record(ev AuditEvent) { f(ev) }
