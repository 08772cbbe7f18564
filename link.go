package tokenbroker

import (
	"time"
)

// LinkState is the lifecycle state of a [Link].
type LinkState string

// Link states.
const (
	// LinkActive: the link holds a grant that tokenbroker believes usable.
	LinkActive LinkState = "active"
	// LinkDegraded: refreshing the link has failed transiently (the
	// provider or the network) for longer than a threshold. It still
	// serves its token while that is valid and is still refreshed; the
	// next successful refresh makes it active again (a recovery).
	LinkDegraded LinkState = "degraded"
	// LinkIdle: nobody has asked for the link's token for longer than the
	// idle threshold, so it is neither refreshed in the background nor
	// kept alive: it is left to expire. It is still served and refreshed
	// on demand; a use makes it active again. A provider whose grants die
	// unused marks it reauth_required (reason inactivity) once its
	// inactivity limit has passed.
	LinkIdle LinkState = "idle"
	// LinkReauthRequired: the link's grant is broken; the user must connect
	// again. ReauthReason says why, FailureReason in words.
	LinkReauthRequired LinkState = "reauth_required"
)

// LinkStates lists every link state, in documentation order.
func LinkStates() []LinkState {
	return []LinkState{LinkActive, LinkDegraded, LinkIdle, LinkReauthRequired}
}

// Valid reports whether s is a known state.
func (s LinkState) Valid() bool {
	switch s {
	case LinkActive, LinkDegraded, LinkIdle, LinkReauthRequired:
		return true
	}
	return false
}

// Refreshable reports whether a link in state s holds a grant that may
// still be refreshed: every state but reauth_required.
func (s LinkState) Refreshable() bool { return s.Valid() && s != LinkReauthRequired }

// ReauthReason is the typed reason of a [LinkReauthRequired] link: what a
// platform can act on. [Link.FailureReason] explains it in words.
type ReauthReason string

// Reasons a link needs the user to connect again.
const (
	// ReasonRevoked: the provider rejected the link's grant at the first
	// attempt of a generation (revoked, expired, or otherwise invalid).
	ReasonRevoked ReauthReason = "revoked"
	// ReasonLostRefresh: the provider rejected a refresh token that an
	// earlier attempt of the same generation may already have spent (a
	// holder died after the provider's answer, or an answer was lost in
	// transit); [Link.FailureReason] names the cause.
	ReasonLostRefresh ReauthReason = "lost_refresh"
	// ReasonNoRefreshToken: the access token expired and the link has no
	// refresh token.
	ReasonNoRefreshToken ReauthReason = "no_refresh_token"
	// ReasonScopesChanged: the provider rejected the refresh because the
	// grant's scopes no longer match (invalid_scope).
	ReasonScopesChanged ReauthReason = "scopes_changed"
	// ReasonInactivity: the link was left idle past its provider's
	// inactivity limit (the provider lets an unused grant expire), so its
	// grant has expired by inactivity.
	ReasonInactivity ReauthReason = "inactivity"
)

// ReauthReasons lists every typed reason, in documentation order.
func ReauthReasons() []ReauthReason {
	return []ReauthReason{ReasonRevoked, ReasonInactivity, ReasonLostRefresh, ReasonScopesChanged, ReasonNoRefreshToken}
}

// Token is an OAuth2 token set as a provider issued it (RFC 6749 §5.1).
// AccessToken, RefreshToken, IDToken and the values of Extra are secrets:
// they are sealed at rest (package crypt) and never logged.
type Token struct {
	AccessToken  string
	TokenType    string
	RefreshToken string
	IDToken      string
	// Expiry is when AccessToken expires; the zero time means it does not.
	Expiry time.Time
	// IssuedAt is when the token set was obtained, on the clock that
	// computed Expiry from the provider's expires_in (zero: unknown), so
	// that Expiry-IssuedAt is the access token's lifetime.
	IssuedAt time.Time
	Scopes   []string
	// Extra holds provider-specific members of the token response that the
	// provider configuration asks to keep (for example GitHub's
	// refresh_token_expires_in). Values are sealed like the tokens.
	Extra map[string]string
}

// ValidFor reports whether the access token is present and still valid d
// after now. A token without expiry is valid for any d.
func (t *Token) ValidFor(now time.Time, d time.Duration) bool {
	if t == nil || t.AccessToken == "" {
		return false
	}
	if t.Expiry.IsZero() {
		return true
	}
	return now.Add(d).Before(t.Expiry)
}

// Link is one user's connection to one provider: the tokens, their
// generation, the state of the grant and the refresh lease.
//
// Generation is bumped on every token write (connect, import, refresh); the
// refresh protocol's compare-and-swap compares it (docs/design.md step 5, I3).
// LeaseOwner and LeaseUntil are set and compared with the database's clock
// (step 4).
type Link struct {
	ID         int64
	UserID     string
	ProviderID string

	// AccountID and AccountLogin identify the user at the provider, as the
	// provider's validation endpoint reported them.
	AccountID    string
	AccountLogin string

	Token Token
	// KeyID names the key that sealed the token fields, "" when they are
	// stored as given (only below the crypt layer, in tests).
	KeyID string

	Generation    int64
	State         LinkState
	ReauthReason  ReauthReason // set with LinkReauthRequired
	FailureReason string

	LeaseOwner string
	LeaseUntil time.Time // zero: no lease
	LeaseEpoch int64     // the fencing number of the newest lease (see [Lease])

	// Attempts counts the lease acquisitions of this generation; Suspect
	// is "", [LossHolderDied], [LossAnswerLost] or [LossPreviousHolder]
	// (see [LeaseGrant]).
	Attempts int
	Suspect  string
	// Failures counts the consecutive failed refresh attempts (not
	// processed or uncertain) since the last success; FailingSince is when
	// the first of them ended; LastError is the newest one's reason.
	// NextAttemptAt is the link's backoff, shared by every replica (zero:
	// none).
	Failures      int
	FailingSince  time.Time
	LastError     string
	NextAttemptAt time.Time

	CreatedAt time.Time
	UpdatedAt time.Time
	// RefreshedAt is when the current tokens were obtained from the
	// provider (connect, import or refresh), on the database's clock.
	RefreshedAt time.Time
	// LastUsedAt is when a token of the link was last asked for (or the
	// link connected), on the database's clock. It is recorded at most
	// about once per interval per link, asynchronously, so it may lag
	// that much.
	LastUsedAt time.Time
}

// LinkKey names a link by its user and provider.
type LinkKey struct {
	UserID     string
	ProviderID string
}

// StaleLinkQuery selects links whose tokens are older than a time: see
// [LinkStore.ListStaleLinks].
type StaleLinkQuery struct {
	ProviderID      string
	States          []LinkState
	RefreshedBefore time.Time
	Limit           int
}

// ExpiryCursor is a position in the (Token.Expiry, ID) order of
// [LinkStore.ListLinksExpiringBefore]; the zero value is the start.
type ExpiryCursor struct {
	Expiry time.Time
	ID     int64
}

// LinkStateCount is the number of links of one provider in one state.
type LinkStateCount struct {
	ProviderID string
	State      LinkState
	Count      int64
}

// Lifetime estimates how long the provider's access tokens live: the
// current token's expiry minus the time it was obtained. It is 0 when
// unknown (no expiry, or no issue time). For an imported token it is what
// was left of its life at the import.
func (l *Link) Lifetime() time.Duration {
	t := &l.Token
	if t.Expiry.IsZero() || t.IssuedAt.IsZero() || !t.Expiry.After(t.IssuedAt) {
		return 0
	}
	return t.Expiry.Sub(t.IssuedAt)
}

// Validate checks the fields a caller sets when it puts a link.
func (l *Link) Validate() error {
	if err := ValidateUserID(l.UserID); err != nil {
		return err
	}
	if err := ValidateProviderID(l.ProviderID); err != nil {
		return err
	}
	if l.Token.AccessToken == "" && l.Token.RefreshToken == "" {
		return Errorf(EINVALID, "a link needs an access token or a refresh token")
	}
	return nil
}
