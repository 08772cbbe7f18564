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
	// LinkReauthRequired: the provider rejected the link's grant; the user
	// must connect again. FailureReason says why.
	LinkReauthRequired LinkState = "reauth_required"
)

// Valid reports whether s is a known state.
func (s LinkState) Valid() bool { return s == LinkActive || s == LinkReauthRequired }

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
	Scopes []string
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
// refresh protocol's compare-and-swap compares it (DESIGN.md step 5, I3).
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
	FailureReason string

	LeaseOwner string
	LeaseUntil time.Time // zero: no lease

	CreatedAt   time.Time
	UpdatedAt   time.Time
	RefreshedAt time.Time // zero: never refreshed by tokenbroker
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
