package tokenbroker

import (
	"context"
	"time"
)

// Lease is the fencing token of a link's refresh lease (docs/design.md,
// "The lease"). [LinkStore.AcquireLease] hands it out; every later write by
// the holder (renew, commit, mark, release) names it and is applied only
// if the row still carries the same owner and epoch, in the same single
// statement. The epoch grows with every acquisition of the link's lease and
// never goes back, so a holder whose lease was taken over can no longer
// change anything, however late its write arrives (I1, I3).
type Lease struct {
	LinkID     int64
	Generation int64
	Owner      string
	Epoch      int64
}

// LeaseRequest asks for a link's refresh lease.
type LeaseRequest struct {
	LinkID     int64
	Generation int64
	Owner      string
	// TTL is how long the lease lasts unless renewed.
	TTL time.Duration
	// Grace is how long an expired lease that its holder did not release
	// stays protected after a would-be successor first saw it expired: a
	// live holder cut off from the database (an outage, a pause) must be
	// able to commit the answer it holds in memory when the database
	// returns before anybody else sends the same refresh token. It must
	// exceed the holder's commit retry interval.
	Grace time.Duration
}

// Loss causes: why a generation's refresh token may already have been
// processed by the provider when it is sent again (docs/design.md, I2's two
// windows). They are durable on the link row, whoever sees them.
const (
	// LossHolderDied: an earlier lease of this generation was taken over
	// (or found) without having been released; its holder may have died
	// between the provider's answer and its commit.
	LossHolderDied = "holder_died"
	// LossAnswerLost: an earlier attempt of this generation was sent and
	// its answer was lost or unknown (a timeout or reset after the request
	// was written, a 5xx).
	LossAnswerLost = "answer_lost"
	// LossPreviousHolder: the previous generation was refreshed by a
	// successor that took over an unreleased lease; the holder it took
	// over from may have had its request still on its way, and a provider
	// that processed that request after the successor's spent this
	// generation's refresh token (and revoked the grant with it). It is
	// the holder_died window, seen one generation late; it counts as
	// holder_died.
	LossPreviousHolder = "previous_holder"
)

// LeaseGrant is the answer of [LinkStore.AcquireLease]. The times are on
// the database's clock; Now is that clock when the statement ran, so a
// caller can compute waits without trusting its own clock.
type LeaseGrant struct {
	// Won reports whether the lease was taken. When it was, Lease is the
	// fencing token of every later write.
	Won   bool
	Lease Lease
	// Attempt counts the acquisitions of this generation's lease,
	// including this one (1: the first attempt).
	Attempt int
	// Suspect is "", [LossHolderDied], [LossAnswerLost] or
	// [LossPreviousHolder]: whether, and why, this generation's refresh
	// token may already have been processed. A rejection of a refresh token with a Suspect is a lost
	// refresh, not a revocation.
	Suspect string
	// PreviousOwner is the owner of an unreleased lease that this
	// acquisition took over ("" when the lease was free).
	PreviousOwner string

	// The row as the statement saw it (after the change when Won).
	Generation int64
	State      LinkState
	// FailingSince is when the link's current run of failed attempts
	// began (zero: none). A holder's lease keeps both it and State from
	// changing under it, so the holder can tell which transition its own
	// write makes (degraded, recovered).
	FailingSince  time.Time
	LeaseOwner    string
	LeaseUntil    time.Time // zero: no lease
	NextAttemptAt time.Time // zero: no backoff
	// GraceUntil is when an expired, unreleased lease may be taken over;
	// zero while nobody has seen it expired.
	GraceUntil time.Time
	Now        time.Time
}

// Release says how a lease holder that neither committed nor marked the
// link ends its attempt.
type Release struct {
	// Class is [FailureNotProcessed] (the refresh token certainly did not
	// reach the provider, or the provider said it did not act) or
	// [FailureUncertain] (it may have been processed). Empty: nothing was
	// sent, the lease is just given back.
	Class FailureClass
	// Backoff is how long every replica waits before the link's next
	// attempt (0: none). It is stored as next_attempt_at on the row.
	Backoff time.Duration
	// Error is the user-safe failure reason kept on the row.
	Error string
	// Degrade makes an active link degraded with this release (a failure
	// class must be set): the holder found the link's failures older than
	// its threshold. The transition's record goes in the release's
	// [Record], so it is written once, by the release that crosses it.
	Degrade bool
}

// Reauth says why a link is marked [LinkReauthRequired].
type Reauth struct {
	Reason ReauthReason
	// Detail is the user-safe explanation (the provider's error code and
	// description, the loss window), at most a few hundred bytes.
	Detail string
}

// Record is what a state-changing write records in the same transaction as
// the change, so that a process dying a moment later cannot lose it: audit
// events, and webhook events for the outbox ([OutboxStore]). A write that
// changes nothing (a lost compare-and-swap) writes none of it, and a record
// that cannot be written undoes the change.
type Record struct {
	Audit  []AuditEvent
	Events []Event
}

// Empty reports whether r has nothing to write.
func (r Record) Empty() bool { return len(r.Audit) == 0 && len(r.Events) == 0 }

// ProviderHealth is the state of a provider shared by every replica: its
// circuit (opened by repeated failures across links, probed by one call at
// a time) and whether its client configuration is broken. Times are on the
// database's clock.
type ProviderHealth struct {
	ProviderID string
	// Failures counts consecutive failed refresh calls across the
	// provider's links since the last success.
	Failures int
	// Opens counts the consecutive openings of the circuit; each lasts
	// longer than the one before.
	Opens int
	// OpenUntil is when the open circuit lets one probe through (zero:
	// closed).
	OpenUntil time.Time
	// ProbeUntil is when the probe under way is given up (zero: none).
	ProbeUntil time.Time
	// Misconfigured is the reason the provider refused this service's
	// client credentials ("" when not): an operator error, never a link's.
	Misconfigured      string
	MisconfiguredSince time.Time
	UpdatedAt          time.Time
	// Now is the database clock when the row was read.
	Now time.Time
}

// Open reports whether the circuit blocks refresh calls at h.Now.
func (h *ProviderHealth) Open() bool {
	return h != nil && !h.OpenUntil.IsZero() && h.Now.Before(h.OpenUntil)
}

// Troubled reports whether anything is recorded against the provider, so
// that a success must be recorded to clear it.
func (h *ProviderHealth) Troubled() bool {
	return h != nil && (h.Failures > 0 || !h.OpenUntil.IsZero() || h.Misconfigured != "")
}

// ProviderFailure is one failed refresh call, as recorded against the
// provider.
type ProviderFailure struct {
	// Threshold is the number of consecutive failures that opens the
	// circuit.
	Threshold int
	// OpenFor is the first opening's length; each further opening
	// doubles it, up to MaxOpenFor.
	OpenFor, MaxOpenFor time.Duration
	// Misconfigured, when set, is the reason the provider refused the
	// client: the circuit opens at once and the provider is marked
	// misconfigured.
	Misconfigured string
	// RetryAfter, when the provider said when to come back, keeps the
	// circuit open at least that long if it opens.
	RetryAfter time.Duration
	// Record is written in the same transaction when this failure makes
	// the provider misconfigured (it was not): the transition's audit and
	// webhook events, written once across replicas.
	Record Record
}

// ProviderHealthStore keeps [ProviderHealth], one row per provider, each
// write one statement judged on the database's clock.
type ProviderHealthStore interface {
	// GetProviderHealth returns the provider's health; a provider with no
	// row is healthy (a zero value with ProviderID and Now set).
	GetProviderHealth(ctx context.Context, providerID string) (*ProviderHealth, error)
	// ListProviderHealth returns every provider with a row.
	ListProviderHealth(ctx context.Context) ([]*ProviderHealth, error)
	// RecordProviderFailure counts a failure and opens the circuit when
	// f.Threshold is reached (or at once for f.Misconfigured). It returns
	// the health after the change and whether the circuit opened or the
	// provider became misconfigured by it.
	RecordProviderFailure(ctx context.Context, providerID string, f ProviderFailure) (after *ProviderHealth, changed bool, err error)
	// RecordProviderSuccess clears the provider's failures, circuit and
	// misconfiguration. It returns the health before the change (nil when
	// there was nothing to clear). rec is written in the same transaction
	// when the provider was misconfigured (its recovery), so of replicas
	// racing to clear it exactly one writes it.
	RecordProviderSuccess(ctx context.Context, providerID string, rec Record) (before *ProviderHealth, err error)
	// AcquireProviderProbe lets one caller across all replicas probe an
	// open circuit whose OpenUntil has passed, for ttl. Reports whether it
	// won.
	AcquireProviderProbe(ctx context.Context, providerID, owner string, ttl time.Duration) (bool, error)
}
