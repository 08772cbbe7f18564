package tokenbroker

import "time"

// Audit actions.
const (
	AuditTokenRead     = "token.read"
	AuditLinkCreate    = "link.create"
	AuditLinkImport    = "link.import"
	AuditLinkRefresh   = "link.refresh"
	AuditLinkBroken    = "link.broken"
	AuditLinkDelete    = "link.delete"
	AuditAPIKeyCreate  = "apikey.create"
	AuditAPIKeyRevoke  = "apikey.revoke"
	AuditRefreshFailed = "link.refresh_failed"
	AuditLostRefresh   = "link.lost_refresh"
	// AuditReplacedGrantRevoke: the grant an import replaced was revoked
	// at the provider (best effort; the outcome is in the detail).
	AuditReplacedGrantRevoke = "link.replaced_grant_revoke"
	// AuditConnectSessionCreate: an operator made a reconnect link.
	AuditConnectSessionCreate = "connect_session.create"
	// AuditConsoleSignIn: an admin key signed in to the console.
	AuditConsoleSignIn = "console.sign_in"

	// AuditLinkDegraded: the link's refreshes kept failing transiently
	// past the degraded threshold; AuditLinkIdle: nobody asked for the
	// link's token for longer than the idle threshold, so it is no longer
	// refreshed in the background or kept alive.
	AuditLinkDegraded = "link.degraded"
	AuditLinkIdle     = "link.idle"

	AuditProviderMisconfigured = "provider.misconfigured"
	AuditProviderRecovered     = "provider.recovered"
	// AuditWebhookRetry: an operator sent a webhook dead letter back to
	// the outbox.
	AuditWebhookRetry = "webhook.retry"
)

// AuditEvent is one row of the audit trail. It never holds a token or a
// key secret.
//
// Lifecycle events are one row each, written with the change. Token reads
// ([AuditTokenRead]) are aggregated by the audit batcher: one row per
// flush interval and (actor, user, provider, outcome, detail), whose Count
// says how many reads it stands for, between FirstAt and Time.
type AuditEvent struct {
	ID int64
	// Time is when the event happened; for an aggregated row, the last
	// event it counts.
	Time       time.Time
	Actor      string // API key prefix, "browser", "system" or a replica id
	Action     string
	UserID     string
	ProviderID string
	Outcome    string // "ok" or an error code
	Detail     string
	// Count is how many events the row stands for; 0 is read as 1.
	Count int64
	// FirstAt is the time of the first event an aggregated row counts.
	// Stores return Time for a row of one event; zero when written means
	// the same.
	FirstAt time.Time
}

// N returns how many events e stands for: Count, or 1 when unset.
func (e *AuditEvent) N() int64 { return max(e.Count, 1) }

// First returns the time of the first event e counts: FirstAt, or Time
// when unset.
func (e *AuditEvent) First() time.Time {
	if e.FirstAt.IsZero() {
		return e.Time
	}
	return e.FirstAt
}

// AuditFilter selects audit events. Zero fields match everything. Events are
// returned newest first; BeforeID pages backwards. Since and Until compare
// with an event's Time (the last event of an aggregated row).
type AuditFilter struct {
	UserID     string
	ProviderID string
	Action     string
	Actor      string
	Since      time.Time
	Until      time.Time
	BeforeID   int64
	Limit      int // 0: a default of 100; at most 1000 (see [PageLimit])
}

// PageLimit is the number of entries a page of the audit trail or of the
// dead letters holds when asked for n ([AuditFilter.Limit],
// [DeadLetterFilter.Limit]): 100 for 0 (or less), at most 1000.
func PageLimit(n int) int {
	switch {
	case n <= 0:
		return 100
	case n > 1000:
		return 1000
	}
	return n
}
