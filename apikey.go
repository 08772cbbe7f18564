package tokenbroker

import (
	"slices"
	"time"
)

// API key scopes.
const (
	ScopeTokensRead = "tokens:read"
	ScopeLinksRead  = "links:read"
	ScopeLinksWrite = "links:write"
	ScopeAdmin      = "admin"
)

// AllScopes lists every scope an API key may have.
var AllScopes = []string{ScopeTokensRead, ScopeLinksRead, ScopeLinksWrite, ScopeAdmin}

// APIKey is a caller's credential. The secret is shown once at creation and
// stored only as a hash (SecretHash); Prefix is the public, unique part by
// which a presented key is looked up before its hash is compared in
// constant time.
type APIKey struct {
	ID         int64
	Prefix     string
	SecretHash []byte
	Name       string
	Scopes     []string
	// Users and Providers restrict the key; empty means any.
	Users     []string
	Providers []string
	CreatedAt time.Time
	RevokedAt time.Time // zero: not revoked
}

// HasScope reports whether the key grants scope. admin grants every scope.
func (k *APIKey) HasScope(scope string) bool {
	return slices.Contains(k.Scopes, ScopeAdmin) || slices.Contains(k.Scopes, scope)
}

// AllowsUser reports whether the key may act for userID.
func (k *APIKey) AllowsUser(userID string) bool {
	return len(k.Users) == 0 || slices.Contains(k.Users, userID)
}

// AllowsProvider reports whether the key may act on providerID.
func (k *APIKey) AllowsProvider(providerID string) bool {
	return len(k.Providers) == 0 || slices.Contains(k.Providers, providerID)
}

// Revoked reports whether the key was revoked.
func (k *APIKey) Revoked() bool { return !k.RevokedAt.IsZero() }
