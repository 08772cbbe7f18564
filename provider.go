package tokenbroker

import (
	"context"
	"fmt"
	"time"
)

// Provider is one configured OAuth2 provider (a GitHub App, a GitLab
// instance, an OIDC issuer, ...). Implementations live in package provider.
// All methods are safe for concurrent use.
type Provider interface {
	// ID is the configured id, as used in URLs ("github", "gitlab-corp").
	ID() string
	// Kind is the provider kind ("github", "gitlab", "oidc", ...).
	Kind() string
	// Info describes the provider without secrets.
	Info() ProviderInfo
	// RefreshAhead is how long before expiry a token is refreshed
	// (docs/design.md step 2).
	RefreshAhead() time.Duration

	// Refresh exchanges refreshToken at the token endpoint (RFC 6749 §6).
	// It sends the request exactly once: it never retries, and never tries
	// a second client authentication style (I2). A failure is a
	// [*ProviderError] that says whether it is permanent. If the response
	// carries no new refresh token, the returned token keeps refreshToken.
	Refresh(ctx context.Context, refreshToken string) (*Token, error)

	// AuthCodeURL is the authorization endpoint URL for the authorization
	// code grant with PKCE S256 (RFC 6749 §4.1, RFC 7636).
	AuthCodeURL(state, codeChallenge, redirectURL string) string
	// Exchange redeems an authorization code (RFC 6749 §4.1.3).
	Exchange(ctx context.Context, code, codeVerifier, redirectURL string) (*Token, error)

	// DeviceAuth starts the device authorization grant (RFC 8628 §3.1).
	// Providers without it return an [*Error] with [ENOTIMPLEMENTED].
	DeviceAuth(ctx context.Context) (*DeviceAuth, error)
	// PollDevice polls the token endpoint once for a device code (RFC 8628
	// §3.4). While the user has not approved it returns a [*ProviderError]
	// with Code "authorization_pending" or "slow_down".
	PollDevice(ctx context.Context, deviceCode string) (*Token, error)

	// Validate asks the provider who the token belongs to. Providers that
	// cannot tell return an [*Error] with [ENOTIMPLEMENTED]; a rate-limited
	// answer is a transient [*ProviderError].
	Validate(ctx context.Context, accessToken string) (*Account, error)
	// Revoke revokes the grant at the provider (RFC 7009 or the provider's
	// own API). Providers that cannot revoke return an [*Error] with
	// [ENOTIMPLEMENTED].
	Revoke(ctx context.Context, tok *Token) error
}

// ProviderInfo describes a provider without secrets.
type ProviderInfo struct {
	ID             string        `json:"id"`
	Kind           string        `json:"kind"`
	DisplayName    string        `json:"display_name"`
	Scopes         []string      `json:"scopes"`
	RefreshAhead   time.Duration `json:"-"`
	KeepAlive      KeepAlive     `json:"-"`
	SupportsDevice bool          `json:"supports_device"`
	SupportsRevoke bool          `json:"supports_revoke"`
	Hosts          string        `json:"hosts,omitempty"` // regular expression of hosts it serves
}

// KeepAlive is a provider's policy for grants that expire when unused
// (docs/production.md, "Keep-alive").
type KeepAlive struct {
	// InactivityLimit is how long the provider lets a grant live
	// unrefreshed; 0: no limit. An idle link past it has expired by
	// inactivity.
	InactivityLimit time.Duration
	// RefreshAfter is the age of a link's tokens (since RefreshedAt) at
	// which a link still in use is refreshed to keep its grant alive; 0:
	// never.
	RefreshAfter time.Duration
}

// Account is the user's identity at a provider.
type Account struct {
	ID    string
	Login string
	Email string
}

// DeviceAuth is a device authorization response (RFC 8628 §3.2).
type DeviceAuth struct {
	DeviceCode              string
	UserCode                string
	VerificationURI         string
	VerificationURIComplete string
	Expiry                  time.Time
	Interval                time.Duration
}

// FailureClass says what a failed provider call means for the grant and
// whether the provider may have acted on the request (docs/design.md,
// "Outcomes").
type FailureClass string

// Failure classes.
const (
	// FailureRejected: the provider rejected the grant itself
	// (invalid_grant, bad_refresh_token, any other 400 answer to a
	// refresh): the link needs the user, unless an earlier attempt of the
	// same generation explains the rejection (a lost refresh).
	FailureRejected FailureClass = "rejected"
	// FailureClient: the provider refused this service's client
	// (invalid_client, unauthorized_client, a client-authentication 401):
	// an operator error that marks the provider misconfigured, never a
	// link. The grant was not processed.
	FailureClient FailureClass = "client"
	// FailureNotProcessed: the request certainly did not reach the
	// provider (dial, DNS, refused connection, TLS handshake, nothing
	// written) or the provider said it did not act (429, 503 with
	// Retry-After): the same refresh token may be sent again.
	FailureNotProcessed FailureClass = "not_processed"
	// FailureUncertain: the request was sent and the answer is unknown or
	// suspicious (a timeout or reset after it was written, a 5xx, an
	// unreadable answer): the provider may have rotated the refresh token.
	FailureUncertain FailureClass = "uncertain"
)

// ProviderError is a failed call to a provider's endpoint. It keeps the RFC
// 6749 §5.2 fields the way oauth2.RetrieveError does. Description is
// truncated and never contains a token.
type ProviderError struct {
	ProviderID  string
	StatusCode  int    // 0 for network errors
	Code        string // RFC 6749 "error", e.g. "invalid_grant"
	Description string // RFC 6749 "error_description"
	// Class says what the failure means (see [FailureClass]).
	Class      FailureClass
	RetryAfter time.Duration // from a Retry-After header, if any
	Err        error         // network or decoding cause, if any
}

// Transient reports whether the failure is the provider's or the
// network's, not the grant's or the client's: not processed or uncertain.
func (e *ProviderError) Transient() bool {
	return e.Class == FailureNotProcessed || e.Class == FailureUncertain
}

// Error implements the error interface.
func (e *ProviderError) Error() string {
	class := e.Class
	if class == "" {
		class = FailureUncertain
	}
	s := fmt.Sprintf("provider %s: %s failure", e.ProviderID, class)
	if e.StatusCode != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.StatusCode)
	}
	if e.Code != "" {
		s += ": " + e.Code
	}
	if e.Description != "" {
		s += ": " + e.Description
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *ProviderError) Unwrap() error { return e.Err }

// Reason is the short, user-safe failure reason stored on a broken link.
func (e *ProviderError) Reason() string {
	s := e.Code
	if s == "" && e.StatusCode != 0 {
		s = fmt.Sprintf("http_%d", e.StatusCode)
	}
	if s == "" {
		s = string(e.Class)
	}
	if e.Description != "" {
		s += ": " + e.Description
	}
	return Truncate(s, 200)
}

// Providers finds configured providers by id.
type Providers interface {
	// Provider returns the provider with the given id, or an [*Error] with
	// [ENOTFOUND].
	Provider(id string) (Provider, error)
	// List returns every configured provider in a stable order.
	List() []Provider
}

// Truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
