package fakeidp

import (
	"crypto/rsa"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Flavor selects how the token endpoint reports errors and formats its
// answers, so that clients can be tested against the shapes real providers
// use.
type Flavor string

const (
	// FlavorStandard answers as RFC 6749 §5.2 says: HTTP 400 (401 for
	// invalid_client) with a JSON body carrying "error", e.g. invalid_grant.
	FlavorStandard Flavor = "standard"
	// FlavorGitHub answers as GitHub's OAuth apps do: every token endpoint
	// error is HTTP 200 with an error member (bad_refresh_token,
	// bad_verification_code, incorrect_client_credentials,
	// incorrect_device_code, ...), and answers are form-encoded unless the
	// request's Accept header asks for JSON.
	FlavorGitHub Flavor = "github"
)

// ClientAuthMode says which client authentication methods of RFC 6749
// §2.3.1 the token, revocation and device endpoints accept.
type ClientAuthMode string

const (
	// ClientAuthBoth accepts HTTP Basic and form parameters (the default).
	ClientAuthBoth ClientAuthMode = "both"
	// ClientAuthBasic accepts only HTTP Basic (client_secret_basic).
	ClientAuthBasic ClientAuthMode = "basic"
	// ClientAuthForm accepts only client_id and client_secret form
	// parameters (client_secret_post).
	ClientAuthForm ClientAuthMode = "form"
)

// OverlapMode is what [Config.OverlappingRefresh] does with an overlapping
// refresh.
type OverlapMode string

const (
	// OverlapReuse treats it as a reuse: the family is revoked, as with any
	// used token (the default).
	OverlapReuse OverlapMode = "reuse"
	// OverlapServerError answers 500 server_error and changes nothing, as a
	// server whose storage refuses the second of two concurrent
	// transactions does.
	OverlapServerError OverlapMode = "server_error"
	// OverlapRevokedPair answers 200 with a new pair that is already
	// revoked.
	OverlapRevokedPair OverlapMode = "revoked_pair"
)

// Default values of [Config].
const (
	DefaultClientID       = "tokenbroker-test"
	DefaultClientSecret   = "tokenbroker-test-secret"
	DefaultAccessTokenTTL = time.Hour
	DefaultCodeTTL        = time.Minute
	DefaultDeviceCodeTTL  = 10 * time.Minute
	DefaultDeviceInterval = 5 * time.Second
	DefaultRetryAfter     = time.Second
)

// User is an account at the fake provider.
type User struct {
	ID    string `json:"id"`
	Login string `json:"login"`
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

// DefaultUsers are the accounts a server has when [Config.Users] is empty.
var DefaultUsers = []User{
	{ID: "1001", Login: "alice", Email: "alice@example.com", Name: "Alice Example"},
	{ID: "1002", Login: "bob", Email: "bob@example.com", Name: "Bob Example"},
	{ID: "1003", Login: "carol", Email: "carol@example.com", Name: "Carol Example"},
}

// ParseUser parses "id:login:email" (email optional, login defaults to id)
// as used by the --user flag of `tokenbroker fakeidp`.
func ParseUser(s string) (User, error) {
	parts := strings.Split(s, ":")
	if len(parts) > 3 || parts[0] == "" {
		return User{}, fmt.Errorf("fakeidp: user %q: want id[:login[:email]]", s)
	}
	u := User{ID: parts[0], Login: parts[0]}
	if len(parts) > 1 && parts[1] != "" {
		u.Login = parts[1]
	}
	if len(parts) > 2 && parts[2] != "" {
		u.Email = parts[2]
	} else {
		u.Email = u.Login + "@example.com"
	}
	return u, nil
}

// Config configures a [Server]. The zero value is a working server with the
// defaults documented on each field.
type Config struct {
	// BaseURL is the URL clients reach the server at, used for the issuer,
	// discovery and verification URIs. Empty: the listener's URL for
	// [Start], or http(s)://<request Host> for a handler made by [New].
	BaseURL string

	// ClientID and ClientSecret identify the one registered client.
	// Defaults: [DefaultClientID], [DefaultClientSecret].
	ClientID, ClientSecret string
	// PublicClient makes the client public (RFC 6749 §2.1): no secret is
	// required, only client_id. A secret that is sent must still match.
	PublicClient bool
	// RedirectURIs are the registered redirect URIs, matched exactly
	// (RFC 9700 §4.1.3). Empty: any loopback http(s) redirect URI is
	// accepted (127.0.0.1, [::1] or localhost, any port; RFC 8252 §7.3).
	RedirectURIs []string

	// AccessTokenTTL is the access token lifetime; default 1h, minimum 1s.
	AccessTokenTTL time.Duration
	// RefreshTokenTTL bounds a refresh token's life from its issue; 0 means
	// refresh tokens do not expire.
	RefreshTokenTTL time.Duration
	// CodeTTL is the authorization code lifetime; default 1m.
	CodeTTL time.Duration
	// DeviceCodeTTL is the device code lifetime (RFC 8628 §3.2
	// expires_in); default 10m.
	DeviceCodeTTL time.Duration
	// DeviceInterval is the minimum polling interval announced to device
	// clients (RFC 8628 §3.2 interval); whole seconds, default 5s.
	DeviceInterval time.Duration

	// Flavor selects the error shapes; default [FlavorStandard].
	Flavor Flavor
	// RequirePKCE rejects authorization requests without an S256
	// code_challenge (RFC 7636, RFC 9700 §2.1.1).
	RequirePKCE bool
	// ClientAuth selects the accepted client authentication methods;
	// default [ClientAuthBoth].
	ClientAuth ClientAuthMode

	// DisableReuseDetection turns off refresh token reuse detection. By
	// default (false) presenting an already used refresh token revokes its
	// whole token family, as RFC 9700 §4.14.2 describes; with detection
	// off, a used token is merely rejected with invalid_grant.
	DisableReuseDetection bool
	// ReuseGracePeriod, when positive, lets a rotated refresh token be
	// presented again within this period after its rotation (the "reuse
	// interval" of Auth0, the grace period of Ory Hydra). Such a replay
	// answers with the very token pair the rotation issued (access token,
	// refresh token and remaining lifetime unchanged), is counted as a
	// GraceReuse and is not a reuse detection. 0 (default) disables it.
	ReuseGracePeriod time.Duration

	// The settings below imitate ways in which real servers differ from
	// fakeidp's defaults; docs/fakeidp.md says which server does what.

	// OverlappingRefresh says what happens to a refresh that presents a
	// refresh token another refresh used up while this one was already
	// under way (it arrived before the rotation): by default
	// ([OverlapReuse]) it is a reuse like any other.
	OverlappingRefresh OverlapMode
	// RevokeGrantWithAccessToken makes an RFC 7009 revocation of an access
	// token revoke its whole token family, refresh token included.
	RevokeGrantWithAccessToken bool
	// RequireOfflineAccess issues refresh tokens only to grants whose
	// scope has offline_access or offline (OpenID Connect Core §11).
	RequireOfflineAccess bool
	// TokenType is the token_type of token answers; default "Bearer"
	// ("bearer" in the GitHub flavour).
	TokenType string
	// IgnoreRefreshScope ignores the scope parameter of a refresh: any
	// value is accepted and the new pair has the grant's scope.
	IgnoreRefreshScope bool
	// NoBasicChallenge leaves WWW-Authenticate out of invalid_client
	// answers to HTTP Basic attempts.
	NoBasicChallenge bool
	// ExpiresInRoundDown makes expires_in the remaining lifetime rounded
	// down from an instant just after the issue, so one second less than
	// the lifetime for a fresh token; by default it is the lifetime.
	ExpiresInRoundDown bool
	// MinimalUserinfo answers the userinfo endpoint with the OpenID
	// Connect claims sub, preferred_username and email only.
	MinimalUserinfo bool
	// MinStateLength refuses authorization requests whose state is
	// shorter (redirected with error=invalid_state); 0: any state.
	MinStateLength int
	// NoIssParameter leaves the iss parameter (RFC 9207) out of the
	// authorization response even in OIDC mode.
	NoIssParameter bool
	// VerboseErrors starts every error_description of the token and
	// revocation endpoints with RFC 6749's description of the code.
	VerboseErrors bool
	// SeparateLoginOrigin serves the login page on a second listener (a
	// second origin): /authorize redirects the browser there, and its form
	// posts back to /authorize. Only for [Start] and [StartAt].
	SeparateLoginOrigin bool

	// AutoApprove, if set to a user's ID or login, makes /authorize approve
	// at once as that user without showing the login page.
	AutoApprove string
	// RecordIssued keeps every issued access and refresh token for
	// [Server.IssuedTokens] (memory grows with every issue: tests only).
	RecordIssued bool
	// Users are the accounts; default [DefaultUsers]. A username typed on
	// the login page that matches no account creates one.
	Users []User

	// OIDC turns on OpenID Connect: the discovery document, the JWKS, and a
	// signed RS256 id_token in token responses whose scope includes
	// "openid".
	OIDC bool
	// SigningKey signs id_tokens; default a fresh RSA 2048 key made by New
	// when OIDC is on.
	SigningKey *rsa.PrivateKey

	// Faults are the faults injected from the start; see [Server.SetFaults].
	Faults Faults

	// Now is the clock for every expiry; default time.Now. Latency and
	// hangs use real timers.
	Now func() time.Time
	// Rand is the source of every token, code and fault decision; default
	// crypto/rand.Reader. It is read under a lock.
	Rand io.Reader
	// Logger receives one debug line per request and warnings for reuse
	// detections. It never receives a token. Default: discard.
	Logger *slog.Logger

	// OnRequest, if set, is called with the endpoint's name ("token",
	// "userinfo", ...) when a protocol request arrives, before any latency
	// or fault: a benchmark or test can act while a call is in flight
	// (kill the replica that sent it, say). It must not block.
	OnRequest func(endpoint string)
}

// Validate reports the first invalid setting of c, as [New] would.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

// withDefaults returns a copy of c with defaults filled in, or an error
// for an invalid setting.
func (c Config) withDefaults() (Config, error) {
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.ClientSecret == "" && !c.PublicClient {
		c.ClientSecret = DefaultClientSecret
	}
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return c, fmt.Errorf("fakeidp: base URL %q is not an absolute http(s) URL", c.BaseURL)
		}
		c.BaseURL = strings.TrimSuffix(c.BaseURL, "/")
	}
	for _, ru := range c.RedirectURIs {
		u, err := url.Parse(ru)
		if err != nil || !u.IsAbs() || u.Fragment != "" {
			return c, fmt.Errorf("fakeidp: redirect URI %q is not an absolute URI without fragment", ru)
		}
	}
	durations := []struct {
		name string
		d    *time.Duration
		def  time.Duration
		min  time.Duration
	}{
		{"access token TTL", &c.AccessTokenTTL, DefaultAccessTokenTTL, time.Second},
		{"code TTL", &c.CodeTTL, DefaultCodeTTL, time.Second},
		{"device code TTL", &c.DeviceCodeTTL, DefaultDeviceCodeTTL, time.Second},
		{"device interval", &c.DeviceInterval, DefaultDeviceInterval, time.Second},
	}
	for _, d := range durations {
		switch {
		case *d.d == 0:
			*d.d = d.def
		case *d.d < d.min:
			return c, fmt.Errorf("fakeidp: %s %v is below the minimum %v", d.name, *d.d, d.min)
		}
	}
	c.DeviceInterval = c.DeviceInterval.Round(time.Second)
	if c.RefreshTokenTTL < 0 {
		return c, fmt.Errorf("fakeidp: negative refresh token TTL")
	}
	if c.ReuseGracePeriod < 0 {
		return c, fmt.Errorf("fakeidp: negative reuse grace period")
	}
	if err := oneOf(&c.Flavor, "flavor", FlavorStandard, FlavorGitHub); err != nil {
		return c, err
	}
	if err := oneOf(&c.OverlappingRefresh, "overlapping refresh mode", OverlapReuse, OverlapServerError, OverlapRevokedPair); err != nil {
		return c, err
	}
	if c.MinStateLength < 0 {
		return c, fmt.Errorf("fakeidp: negative minimum state length")
	}
	if c.TokenType == "" {
		c.TokenType = "Bearer"
		if c.Flavor == FlavorGitHub {
			c.TokenType = "bearer"
		}
	}
	if err := oneOf(&c.ClientAuth, "client auth mode", ClientAuthBoth, ClientAuthBasic, ClientAuthForm); err != nil {
		return c, err
	}
	if len(c.Users) == 0 {
		c.Users = DefaultUsers
	}
	c.Users = append([]User(nil), c.Users...)
	seen := map[string]bool{}
	for _, u := range c.Users {
		if u.ID == "" || u.Login == "" {
			return c, fmt.Errorf("fakeidp: user %+v needs an ID and a login", u)
		}
		if seen["id:"+u.ID] || seen["login:"+u.Login] {
			return c, fmt.Errorf("fakeidp: duplicate user id %q or login %q", u.ID, u.Login)
		}
		seen["id:"+u.ID], seen["login:"+u.Login] = true, true
	}
	if c.AutoApprove != "" && findUser(c.Users, c.AutoApprove) == nil {
		return c, fmt.Errorf("fakeidp: auto-approve user %q is not a configured user", c.AutoApprove)
	}
	if err := c.Faults.Validate(); err != nil {
		return c, err
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// findUser returns the user whose ID or login is key, or nil.
func findUser(users []User, key string) *User {
	for i := range users {
		if users[i].ID == key || users[i].Login == key {
			return &users[i]
		}
	}
	return nil
}

// oneOf checks an enumerated field: empty takes valid[0], its default;
// anything else must be one of valid.
func oneOf[T ~string](v *T, what string, valid ...T) error {
	switch {
	case *v == "":
		*v = valid[0]
	case !slices.Contains(valid, *v):
		names := make([]string, len(valid))
		for i, x := range valid {
			names[i] = string(x)
		}
		return fmt.Errorf("fakeidp: unknown %s %q (want one of %s)", what, *v, strings.Join(names, ", "))
	}
	return nil
}
