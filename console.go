package tokenbroker

import (
	"context"
	"strings"
	"time"
)

// LinkSummary is a link without its tokens: what an operator's screen
// shows. Stores read it without the token columns, so nothing secret is
// read, opened or held. HasRefreshToken says whether the link holds one.
type LinkSummary struct {
	ID              int64
	UserID          string
	ProviderID      string
	AccountID       string
	AccountLogin    string
	Scopes          []string
	Expiry          time.Time // zero: the access token does not expire
	HasRefreshToken bool
	Generation      int64
	State           LinkState
	ReauthReason    ReauthReason // set with LinkReauthRequired
	FailureReason   string
	// Failures, FailingSince, LastError and NextAttemptAt are the link's
	// run of failed refresh attempts and its backoff, as on [Link].
	Failures      int
	FailingSince  time.Time
	LastError     string
	NextAttemptAt time.Time
	LeaseOwner    string
	LeaseUntil    time.Time // zero: no lease
	CreatedAt     time.Time
	UpdatedAt     time.Time
	RefreshedAt   time.Time // zero: never refreshed by tokenbroker
}

// ReasonCode is the code of a failure reason: its text up to the first
// ':' without trailing spaces, or the whole text if it has no ':'. Reasons
// are written as "<code>: <description>" ("invalid_grant: token revoked"),
// so the code groups links broken for the same cause. The stores compute
// the same in SQL.
func ReasonCode(reason string) string {
	if i := strings.IndexByte(reason, ':'); i >= 0 {
		reason = reason[:i]
	}
	return strings.TrimRight(reason, " ")
}

// LinkCursor is a position in the (UserID, ProviderID) order of links.
type LinkCursor struct {
	UserID     string
	ProviderID string
}

// LinkScope limits what a reader may see: a key restricted to some users
// or providers sees only their links and events. Empty lists allow any.
type LinkScope struct {
	Users     []string
	Providers []string
}

// ScopeOf returns the restrictions of k.
func ScopeOf(k *APIKey) LinkScope { return LinkScope{Users: k.Users, Providers: k.Providers} }

// LinkQuery selects links for a paginated list, ordered by (UserID,
// ProviderID). Zero fields match everything.
type LinkQuery struct {
	LinkScope
	ProviderID string
	State      LinkState
	// ReauthReason matches reauth_required links with this typed reason
	// (it implies State reauth_required).
	ReauthReason ReauthReason
	// ReasonCode matches links whose failure reason has this code
	// ([ReasonCode]).
	ReasonCode string
	// UserPrefix matches user ids that start with it; AccountLogin the
	// account login exactly.
	UserPrefix   string
	AccountLogin string
	// After returns the links after the cursor; Before the links before
	// it (still in ascending order). At most one may be set.
	After  *LinkCursor
	Before *LinkCursor
	// Limit is the page size: 0 means 50, at most 1000.
	Limit int
}

// LinkCount is the number of links of one provider in one state with one
// typed reason and one failure reason code ("" for none).
type LinkCount struct {
	ProviderID string
	State      LinkState
	Reauth     ReauthReason
	ReasonCode string
	Count      int64
}

// AuditTally counts the audit events of one provider and action: Total
// since the query's Since, Recent since its Recent.
type AuditTally struct {
	ProviderID string
	Action     string
	Recent     int64
	Total      int64
}

// AuditCountQuery selects the events an [AuditTally] counts.
type AuditCountQuery struct {
	LinkScope
	Actions []string
	// Since bounds the counted window (inclusive); Recent, at or after
	// Since, splits off the recent part.
	Since  time.Time
	Recent time.Time
}

// AdminSession is a signed-in console session. ID is the random secret in
// the browser's cookie; stores keep only its hash. It ends at ExpiresAt
// (absolute) or IdleUntil (pushed forward by use), judged on the
// database's clock.
type AdminSession struct {
	ID        string
	KeyID     int64
	CreatedAt time.Time
	IdleUntil time.Time
	ExpiresAt time.Time
}

// ConsoleStore is what the admin console reads and keeps beside the
// other stores: token-free link summaries, paginated by key (every filter
// is served by an index, so a page costs the same with a million links),
// counts, and the console's sessions, which live in the database so that
// every replica behind a load balancer knows them.
type ConsoleStore interface {
	// ListLinkSummaries returns one page of links matching q, ascending
	// by (UserID, ProviderID), at most q.Limit.
	ListLinkSummaries(ctx context.Context, q LinkQuery) ([]*LinkSummary, error)
	// GetLinkSummary returns the link of userID to providerID without its
	// tokens, or [ENOTFOUND].
	GetLinkSummary(ctx context.Context, userID, providerID string) (*LinkSummary, error)
	// CountLinks counts the links within scope by provider, state, typed
	// reason and reason code.
	CountLinks(ctx context.Context, scope LinkScope) ([]LinkCount, error)
	// CountAudit counts the events of q.Actions within q's scope by
	// provider and action. Events are found by id from the first event
	// five minutes before q.Since, so an event written more than five
	// minutes after events stamped later than it may be missed.
	CountAudit(ctx context.Context, q AuditCountQuery) ([]AuditTally, error)

	// CreateAdminSession stores s, with CreatedAt set from the database
	// clock; IdleUntil and ExpiresAt are set by the caller.
	CreateAdminSession(ctx context.Context, s *AdminSession) error
	// GetAdminSession returns the session with id and its API key, or
	// [ENOTFOUND] if it is missing, idle past IdleUntil or past ExpiresAt.
	GetAdminSession(ctx context.Context, id string) (*AdminSession, *APIKey, error)
	// TouchAdminSession moves the session's IdleUntil to now+idle (never
	// past ExpiresAt) if it is still live; it reports whether it was.
	TouchAdminSession(ctx context.Context, id string, idle time.Duration) (bool, error)
	// DeleteAdminSession removes the session (sign-out); a missing one is
	// not an error.
	DeleteAdminSession(ctx context.Context, id string) error
	// DeleteExpiredAdminSessions removes sessions past either expiry.
	DeleteExpiredAdminSessions(ctx context.Context) (int64, error)

	// TouchAPIKeyUsage records that the key was used now, unless a use
	// less than every ago is already recorded (so replicas write it at most
	// about once per every).
	TouchAPIKeyUsage(ctx context.Context, keyID int64, every time.Duration) error
	// ListAPIKeyUsage returns the last recorded use of each key used.
	ListAPIKeyUsage(ctx context.Context) (map[int64]time.Time, error)
}
