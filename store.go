package tokenbroker

import (
	"context"
	"fmt"
	"time"
)

// Store is everything the rest of tokenbroker may ask of storage. The
// implementations are store/sqlite (embedded default) and store/postgres
// (many replicas); both pass store/storetest. crypt.Store decorates any
// Store to seal the secret fields.
//
// All methods are safe for concurrent use, take ctx first, hold no
// connection after they return (I6) and translate driver errors: a missing
// row is an [*Error] with [ENOTFOUND], a unique violation one with
// [ECONFLICT]. Times that decide leases and expiry of sessions are judged
// on the database's own clock, never the caller's.
type Store interface {
	LinkStore
	APIKeyStore
	ConnectStore
	AuditStore
	OutboxStore
	ConsoleStore
	ProviderHealthStore
	JobLeaseStore

	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// SchemaVersion returns the applied migration version and the newest
	// one this binary knows.
	SchemaVersion(ctx context.Context) (current, latest int64, err error)
	// Now returns the database's clock.
	Now(ctx context.Context) (time.Time, error)
	// Close releases the store's connections.
	Close() error
}

// LinkStore keeps links. The conditional methods are each one statement
// (with the writes of a [Record] in the same transaction), the building
// blocks of the refresh protocol in docs/design.md.
type LinkStore interface {
	// GetLink returns the link of userID to providerID, or [ENOTFOUND].
	GetLink(ctx context.Context, userID, providerID string) (*Link, error)
	// ListLinks returns userID's links ordered by provider id.
	ListLinks(ctx context.Context, userID string) ([]*Link, error)

	// PutLink creates the link (generation 1) or, if one exists for the
	// same user and provider, replaces its tokens and account: generation
	// is bumped, state set to active, failure reason, backoff and lease
	// cleared (the lease epoch is kept, so a holder of the replaced
	// generation can no longer write), refreshed_at and last_used_at set.
	// It is how connect and import write. It signals the link's waiters.
	// rec is written in the same transaction, and with it the link's
	// lifecycle event that only the statement can tell ([PutLinkEvent] of
	// the state it replaced: link.created, or link.recovered after a
	// reconnect).
	PutLink(ctx context.Context, l *Link, rec Record) (*Link, error)
	// DeleteLink removes the link, or returns [ENOTFOUND]. It signals. rec
	// is written in the same transaction.
	DeleteLink(ctx context.Context, userID, providerID string, rec Record) error

	// AcquireLease takes the link's refresh lease for r.Owner until
	// now()+r.TTL, in one conditional statement judged on the database
	// clock (docs/design.md step 4, I1), only if the link's generation is
	// r.Generation, it is active, its backoff (next_attempt_at) has
	// passed, and its lease is free: released, or expired and past its
	// grace (an expired lease's grace starts when an acquisition first
	// finds it expired, which this method records on the row). Winning
	// bumps the lease epoch and the generation's attempt count, and, when
	// it takes over an unreleased lease, records [LossHolderDied] as the
	// generation's suspect, whatever it suspected before (a takeover is
	// what the next generation must hear of). The grant always describes
	// the row.
	AcquireLease(ctx context.Context, r LeaseRequest) (*LeaseGrant, error)
	// RenewLease extends the lease to now()+ttl if lease is still the
	// row's (same owner and epoch), even if it expired meanwhile but
	// nobody took it over. Reports whether it did.
	RenewLease(ctx context.Context, lease Lease, ttl time.Duration) (bool, error)
	// ReleaseLease gives the lease back if it is still the row's,
	// recording the attempt's outcome: r.Class [FailureUncertain] makes
	// [LossAnswerLost] the generation's suspect; a failure class counts a
	// failure and sets the backoff. It signals. Reports whether it did.
	ReleaseLease(ctx context.Context, lease Lease, r Release, rec Record) (bool, error)
	// CommitRefresh writes l.Token (and l.AccountID/AccountLogin when set)
	// if lease is still the row's and its generation is lease.Generation
	// (a fenced compare-and-swap in one statement; step 5, I3). It bumps
	// the generation, clears the lease, attempts, failures and backoff,
	// sets refreshed_at, sets the suspect to l.Suspect (what the committing
	// holder judges the next generation may suffer: "" or
	// [LossPreviousHolder]), and writes rec in the same transaction.
	// A holder whose lease expired but was not taken over still commits.
	// Reports whether it won; a lost commit changes nothing. It signals
	// on success.
	CommitRefresh(ctx context.Context, lease Lease, l *Link, rec Record) (bool, error)
	// MarkReauthRequired sets state reauth_required with r if lease is
	// still the row's, clearing the lease (step 6, I4), and writes rec in
	// the same transaction. It does not touch the tokens. It signals on
	// success.
	MarkReauthRequired(ctx context.Context, lease Lease, r Reauth, rec Record) (bool, error)
	// ListLinksExpiringBefore returns the links the background refresher
	// keeps fresh (active or degraded) whose access token expires before
	// t, in (expiry, id) order after the cursor (zero: from the start), at
	// most limit (indexed).
	ListLinksExpiringBefore(ctx context.Context, t time.Time, after ExpiryCursor, limit int) ([]*Link, error)
	// ListStaleLinks returns the links of q.ProviderID in one of q.States
	// that hold a refresh token and whose tokens were obtained
	// (RefreshedAt) before q.RefreshedBefore, oldest first, at most
	// q.Limit (indexed): the keep-alive's candidates, and the idle links
	// whose grant has expired by inactivity.
	ListStaleLinks(ctx context.Context, q StaleLinkQuery) ([]*Link, error)
	// MarkLinkIdle makes the link idle if it is active or degraded, its
	// generation is still generation, no lease is held on it and it was
	// not used since usedBefore (LastUsedAt), in one conditional
	// statement, writing rec with the change. Reports whether it did.
	MarkLinkIdle(ctx context.Context, linkID, generation int64, usedBefore time.Time, rec Record) (bool, error)
	// RecordLinkUse sets LastUsedAt of the links to the database's clock
	// and makes the idle ones active again; keys of missing links are
	// ignored. It is the batched, asynchronous write of token use (one
	// per link per interval, never one per request); a row another write
	// holds locked may be skipped.
	RecordLinkUse(ctx context.Context, links []LinkKey) error
	// CountLinksByState returns the number of links per provider and
	// state, kept by the database as links are written (cheap to read:
	// one small row per provider and state).
	CountLinksByState(ctx context.Context) ([]LinkStateCount, error)

	// ListLinksNotSealedBy returns links with id > afterID whose key_id is
	// not keyID, by id, at most limit: the batches of a rekey.
	ListLinksNotSealedBy(ctx context.Context, keyID string, afterID int64, limit int) ([]*Link, error)
	// ResealLink rewrites the sealed token fields and key id of l by CAS on
	// l.Generation without bumping it, so a concurrent refresh's commit
	// still wins and a rekey never loses a refreshed token. Reports
	// whether it wrote.
	ResealLink(ctx context.Context, l *Link) (bool, error)
	// CountSealedByKey returns, per key id, how many rows (links and
	// pending auth requests) it seals.
	CountSealedByKey(ctx context.Context) (map[string]int64, error)
}

// Signaler carries a link's "changed" signal (refreshed, marked, released,
// deleted) to waiters in this process and, for stores shared by replicas,
// in every replica. Store implementations provide it.
type Signaler interface {
	// Subscribe returns a channel that receives (coalesced, never blocking
	// the sender) after each change of the link, and a cancel function that
	// must be called. A missed signal is possible (a reconnecting listener
	// wakes all subscribers instead); waiters keep a poll fallback.
	Subscribe(linkID int64) (<-chan struct{}, func())
}

// ChangeFeed reports link changes to in-process caches: the writes of
// this process at once and, for stores shared by replicas, those of every
// replica as they are signalled. Store implementations provide it.
type ChangeFeed interface {
	// OnChange calls fn with the id of each changed link, or with 0 when
	// any link may have changed (a reconnecting listener). fn must be quick
	// and must not block. The returned function unregisters fn.
	OnChange(fn func(linkID int64)) func()
}

// APIKeyStore keeps API keys.
type APIKeyStore interface {
	// CreateAPIKey stores k and returns it with ID and CreatedAt set.
	CreateAPIKey(ctx context.Context, k *APIKey) (*APIKey, error)
	// GetAPIKeyByPrefix returns the key with the prefix, or [ENOTFOUND].
	GetAPIKeyByPrefix(ctx context.Context, prefix string) (*APIKey, error)
	// ListAPIKeys returns every key, revoked ones too, by id.
	ListAPIKeys(ctx context.Context) ([]*APIKey, error)
	// RevokeAPIKey marks the key revoked, or returns [ENOTFOUND].
	RevokeAPIKey(ctx context.Context, id int64) error
}

// ConnectStore keeps connect sessions and pending authorizations.
type ConnectStore interface {
	// CreateConnectSession stores s (ExpiresAt set by the caller).
	CreateConnectSession(ctx context.Context, s *ConnectSession) error
	// GetConnectSession returns the unexpired session, or [ENOTFOUND].
	GetConnectSession(ctx context.Context, id string) (*ConnectSession, error)
	// ClaimConnectSession marks the unexpired session opened, once:
	// it reports false if it was already claimed, [ENOTFOUND] if it is
	// missing or expired.
	ClaimConnectSession(ctx context.Context, id string) (bool, error)

	// CreateAuthRequest stores r.
	CreateAuthRequest(ctx context.Context, r *AuthRequest) error
	// GetAuthRequest returns the unexpired request, or [ENOTFOUND].
	GetAuthRequest(ctx context.Context, id string) (*AuthRequest, error)
	// ConsumeAuthRequest deletes and returns the unexpired request in one
	// statement, so a state is used at most once; [ENOTFOUND] otherwise.
	ConsumeAuthRequest(ctx context.Context, id string) (*AuthRequest, error)
	// ListAuthRequestsNotSealedBy and ResealAuthRequest serve rekey.
	// Stores keep only the SHA-256 (hex) of a request's id, so the listed
	// requests carry that hash as ID, and ResealAuthRequest finds the row
	// by it (rewriting Secret and KeyID), or returns [ENOTFOUND].
	ListAuthRequestsNotSealedBy(ctx context.Context, keyID string, limit int) ([]*AuthRequest, error)
	ResealAuthRequest(ctx context.Context, r *AuthRequest) error
	// DeleteExpired removes expired connect sessions and auth requests.
	DeleteExpired(ctx context.Context) (int64, error)
}

// AuditStore keeps the audit trail.
type AuditStore interface {
	// AppendAudit writes a batch of events in one transaction, each with
	// its Count and FirstAt.
	AppendAudit(ctx context.Context, events []AuditEvent) error
	// ListAudit returns events matching f, newest first.
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, error)
	// PruneAudit deletes at most limit events whose Time is before
	// before, oldest first, through the index on time, and returns how
	// many it deleted. A caller prunes everything past a horizon by
	// calling it until it deletes fewer than limit; each call is one short
	// statement, so other writers wait at most one batch.
	PruneAudit(ctx context.Context, before time.Time, limit int) (int64, error)
}

// JobLeaseStore hands out named leases for background jobs that one
// replica at a time should run (the audit trail's retention), judged on
// the database clock like the links' refresh lease. A job guarded by one
// must be safe to run twice (a holder that stalls past its lease may
// overlap its successor): the lease saves work and contention, it fences
// nothing.
type JobLeaseStore interface {
	// AcquireJobLease takes job's lease for owner until now()+ttl if it is
	// free, expired, or already owner's (a renewal). Reports whether owner
	// holds it now.
	AcquireJobLease(ctx context.Context, job, owner string, ttl time.Duration) (bool, error)
	// ReleaseJobLease gives job's lease back if owner holds it.
	ReleaseJobLease(ctx context.Context, job, owner string) error
}

// SchemaTooNewError is returned by the stores' Open when the database was
// migrated by a newer tokenbroker than this binary: running on it could
// corrupt data the newer schema relies on.
type SchemaTooNewError struct {
	Current int64 // version applied to the database
	Latest  int64 // newest version this binary knows
}

// Error implements the error interface.
func (e *SchemaTooNewError) Error() string {
	return fmt.Sprintf("database schema version %d is newer than this binary supports (%d); upgrade tokenbroker", e.Current, e.Latest)
}
