package tokenbroker

import (
	"strings"
	"time"
)

// Workload is a caller authenticated by a short-lived signed JWT (a
// GitHub Actions OIDC token, a Kubernetes projected service-account token,
// a SPIFFE JWT-SVID, ...) that a configured trust entry accepts, instead of
// an API key. Package identity verifies the JWT and fills it in; the HTTP
// API treats its Scopes, Users and Providers exactly like an API key's.
type Workload struct {
	// TrustID is the id of the trust entry that accepted the JWT.
	TrustID string
	// Issuer and Subject are the JWT's verified iss and sub claims.
	Issuer  string
	Subject string
	// Scopes are the trust entry's scopes (as for API keys).
	Scopes []string
	// Users are the users the workload may act for: the value of the
	// entry's user claim, or the entry's list of users. Never empty.
	Users []string
	// Providers are the providers it may act on. Never empty.
	Providers []string
	// TokenID identifies the presented JWT in the audit trail without
	// being usable as a credential: its jti claim, else a fingerprint
	// (the first 16 hex digits of its SHA-256).
	TokenID string
	// Expiry is the JWT's exp.
	Expiry time.Time
}

// Actor is how the audit trail names the workload:
// "workload:<trust id>;iss=<issuer>;sub=<subject>".
func (w *Workload) Actor() string {
	return "workload:" + w.TrustID + ";iss=" + auditSafe(w.Issuer) + ";sub=" + auditSafe(w.Subject)
}

// auditSafe drops control characters and bounds a claim's length for the
// audit trail.
func auditSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	return Truncate(s, 200)
}
