package tokenbroker

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

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

// HashID returns the hex SHA-256 of a secret id (a connect session id, an
// OAuth2 state, a device request id): what stores keep and look up
// instead of the id. The ids are 256-bit random values, so a fast hash
// hides them.
func HashID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
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
	ID   string
	Kind string
	// SessionID is the connect session of a code flow, the secret of its
	// URL. Stores keep only its hash: they take SessionID on create and
	// return SessionHash, [HashID] of it, on reads (SessionID empty).
	SessionID   string
	SessionHash string
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
