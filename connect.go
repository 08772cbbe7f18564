package tokenbroker

import "time"

// ConnectSession is a short-lived, single-use invitation a platform creates
// for one of its users to connect accounts in the browser. ID is the random
// secret in the session's URL; stores keep only its hash.
type ConnectSession struct {
	ID        string
	UserID    string
	Providers []string // empty: every configured provider
	ReturnURL string
	CreatedBy string // prefix of the API key that created it
	CreatedAt time.Time
	ExpiresAt time.Time
	ClaimedAt time.Time // zero: not yet opened
}

// AuthRequest kinds.
const (
	AuthRequestCode   = "code"   // authorization code grant with PKCE
	AuthRequestDevice = "device" // device authorization grant
)

// AuthRequest is a pending authorization: the single-use, expiring OAuth2
// state of a code flow (with its PKCE verifier), or a device flow awaiting
// the user's approval (with its device code). ID is the random state (or
// device request id); stores keep only its hash. Secret is the PKCE verifier
// or the device code and is sealed at rest.
type AuthRequest struct {
	ID          string
	Kind        string
	SessionID   string // connect session, for code flows
	UserID      string
	ProviderID  string
	Secret      string
	KeyID       string // key that sealed Secret
	RedirectURI string
	UserCode    string // device flow: shown to the user
	VerifyURI   string // device flow
	Interval    time.Duration
	CreatedAt   time.Time
	ExpiresAt   time.Time
}
