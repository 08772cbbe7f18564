// Package apiv1 holds the wire shapes of tokenbroker's HTTP API under
// /api/v1: the one set of Go types that the server (httpapi) writes and
// reads and the Go client (client) reads and writes, and the API's
// OpenAPI 3.1 description ([OpenAPI], served at /api/v1/openapi.json).
//
// The types are encoded with encoding/json/v2 semantics
// (github.com/go-json-experiment/json): member names match exactly, a zero
// time with omitzero is left out, a nil slice is []. The server decodes
// requests strictly (see httpapi); the client ignores members it does not
// know, so a newer server does not break an older client.
//
// A field added here is a field of the API: describe it in openapi.json
// too (httpapi's conformance test validates every documented operation's
// real answers against the description).
package apiv1

import (
	_ "embed"
	"time"
)

// OpenAPI is the OpenAPI 3.1 description of /api/v1, as JSON.
//
//go:embed openapi.json
var OpenAPI []byte

// Token is the body of GET /api/v1/users/{user_id}/providers/{provider_id}/token.
// It never holds the refresh token or the ID token: refreshing is the
// broker's job.
type Token struct {
	AccessToken string            `json:"access_token"`
	TokenType   string            `json:"token_type"`
	Expiry      time.Time         `json:"expiry,omitzero"` // zero (absent): does not expire
	Scopes      []string          `json:"scopes"`
	Extra       map[string]string `json:"extra,omitempty"`
}

// Link is a user's link to a provider as the API shows it: its state and
// metadata, never a token.
type Link struct {
	UserID     string `json:"user_id"`
	ProviderID string `json:"provider_id"`
	// State is active, degraded, idle or reauth_required
	// (tokenbroker.LinkState).
	State string `json:"state"`
	// ReauthReason is the typed reason of a reauth_required link:
	// revoked, inactivity, lost_refresh, scopes_changed or
	// no_refresh_token.
	ReauthReason    string    `json:"reauth_reason,omitempty"`
	FailureReason   string    `json:"failure_reason,omitempty"`
	AccountID       string    `json:"account_id,omitempty"`
	AccountLogin    string    `json:"account_login,omitempty"`
	Scopes          []string  `json:"scopes"`
	Expiry          time.Time `json:"expiry,omitzero"`
	RefreshedAt     time.Time `json:"refreshed_at,omitzero"`
	LastUsedAt      time.Time `json:"last_used_at,omitzero"`
	CreatedAt       time.Time `json:"created_at,omitzero"`
	UpdatedAt       time.Time `json:"updated_at,omitzero"`
	Generation      int64     `json:"generation"`
	HasRefreshToken bool      `json:"has_refresh_token"`
}

// LinkList is the body of GET /api/v1/users/{user_id}/links.
type LinkList struct {
	Links []Link `json:"links"`
}

// ImportRequest is the body of PUT /api/v1/users/{user_id}/links/{provider_id}:
// an existing token pair, for migrating from another system.
type ImportRequest struct {
	AccessToken  string            `json:"access_token,omitempty"`
	RefreshToken string            `json:"refresh_token,omitempty"`
	TokenType    string            `json:"token_type,omitempty"`
	Expiry       *time.Time        `json:"expiry,omitempty"`
	Scopes       []string          `json:"scopes,omitempty"`
	IDToken      string            `json:"id_token,omitempty"`
	Extra        map[string]string `json:"extra,omitempty"`
}

// ImportResult is the answer to importing a link: the stored link and,
// when the import replaced an active link holding another grant, what
// became of that grant at the provider (a Revocation outcome).
type ImportResult struct {
	Link
	ReplacedRevocation string `json:"replaced_revocation,omitempty"`
}

// Revocation outcomes of [ImportResult] and [DeleteResult]: the grant was
// revoked at the provider, the provider cannot revoke, or the attempt
// failed ("failed: <reason>").
const (
	RevocationRevoked      = "revoked"
	RevocationNotSupported = "not_supported"
	RevocationFailedPrefix = "failed: "
)

// DeleteResult is the body of DELETE /api/v1/users/{user_id}/links/{provider_id}.
// The link is deleted in every case; Revocation reports the provider's side.
type DeleteResult struct {
	Deleted    bool   `json:"deleted"`
	Revocation string `json:"revocation"`
}

// Provider describes a configured provider, without secrets.
type Provider struct {
	ID             string   `json:"id"`
	Kind           string   `json:"kind"`
	DisplayName    string   `json:"display_name"`
	Scopes         []string `json:"scopes"`
	SupportsDevice bool     `json:"supports_device"`
	SupportsRevoke bool     `json:"supports_revoke"`
	Hosts          string   `json:"hosts,omitempty"` // regular expression of the hosts it serves
}

// ProviderList is the body of GET /api/v1/providers.
type ProviderList struct {
	Providers []Provider `json:"providers"`
}

// ConnectSessionRequest is the body of POST /api/v1/connect-sessions: a
// short-lived, single-use URL for UserID to connect accounts in the
// browser. Providers limits the session (empty: all the key may use);
// ReturnURL, which must be on the server's allow-list, is where the
// browser goes afterwards.
type ConnectSessionRequest struct {
	UserID    string   `json:"user_id"`
	Providers []string `json:"providers,omitempty"`
	ReturnURL string   `json:"return_url,omitempty"`
}

// ConnectSession is a created connect session: the URL to give the user
// (it holds the session's secret id) and when it stops working.
type ConnectSession struct {
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// DeviceStart is the answer to starting a device flow (RFC 8628 §3.2,
// without the device code, which stays in the broker). ID names the flow
// for polling; Interval is in seconds.
type DeviceStart struct {
	ID                      string    `json:"id"`
	UserCode                string    `json:"user_code"`
	VerificationURI         string    `json:"verification_uri"`
	VerificationURIComplete string    `json:"verification_uri_complete,omitempty"`
	ExpiresAt               time.Time `json:"expires_at"`
	Interval                int       `json:"interval"`
}

// Device flow statuses of [DeviceStatus].
const (
	DevicePending  = "pending"
	DeviceSlowDown = "slow_down"
	DeviceComplete = "complete"
	DeviceDenied   = "denied"
	DeviceExpired  = "expired"
)

// DeviceStatus is the answer to polling a device flow; Link is set once
// complete.
type DeviceStatus struct {
	Status string `json:"status"`
	Link   *Link  `json:"link,omitempty"`
}

// APIKeyRequest is the body of POST /api/v1/api-keys.
type APIKeyRequest struct {
	Name      string   `json:"name"`
	Scopes    []string `json:"scopes"`
	Users     []string `json:"users,omitempty"`
	Providers []string `json:"providers,omitempty"`
}

// APIKey describes a key, without its secret or hash.
type APIKey struct {
	ID        int64     `json:"id"`
	Prefix    string    `json:"prefix"`
	Name      string    `json:"name"`
	Scopes    []string  `json:"scopes"`
	Users     []string  `json:"users"`
	Providers []string  `json:"providers"`
	CreatedAt time.Time `json:"created_at"`
	RevokedAt time.Time `json:"revoked_at,omitzero"` // zero (absent): not revoked
}

// CreatedAPIKey is the answer to creating a key: the only time the
// plaintext Key is ever shown.
type CreatedAPIKey struct {
	APIKey
	Key string `json:"key"`
}

// APIKeyList is the body of GET /api/v1/api-keys.
type APIKeyList struct {
	Keys []APIKey `json:"keys"`
}

// AuditEvent is one audit log entry. It never holds a token. Lifecycle
// events are one entry each (Count 1); token reads (token.read) are
// aggregated: one entry per flush interval (one second by default) and
// caller, user, provider and outcome, whose Count says how many tokens
// were handed out between FirstAt and LastAt.
type AuditEvent struct {
	ID int64 `json:"id"`
	// Time is when the event happened: LastAt.
	Time       time.Time `json:"time"`
	Actor      string    `json:"actor"`
	Action     string    `json:"action"`
	UserID     string    `json:"user_id,omitempty"`
	ProviderID string    `json:"provider_id,omitempty"`
	Outcome    string    `json:"outcome"`
	Detail     string    `json:"detail,omitempty"`
	// Count is how many events the entry stands for (at least 1).
	Count int64 `json:"count"`
	// FirstAt and LastAt are the first and the last event it counts;
	// both are Time for a single event.
	FirstAt time.Time `json:"first_at"`
	LastAt  time.Time `json:"last_at"`
}

// AuditPage is the body of GET /api/v1/audit, newest first. NextBeforeID,
// when not 0, is the before_id of the next (older) page.
type AuditPage struct {
	Events       []AuditEvent `json:"events"`
	NextBeforeID int64        `json:"next_before_id,omitzero"`
}

// Problem is an RFC 9457 problem document, the body of every error answer,
// with tokenbroker's extension members: a stable Code, and ConnectURL and
// RetryAfter (seconds) where they apply.
type Problem struct {
	Type       string `json:"type"`
	Title      string `json:"title"`
	Status     int    `json:"status"`
	Detail     string `json:"detail,omitempty"`
	Code       string `json:"code"`
	ConnectURL string `json:"connect_url,omitempty"`
	RetryAfter int    `json:"retry_after,omitzero"`
}

// DeadLetter is a webhook delivery given up on (its retry window ended, or
// the receiver answered 410 Gone): the event, never a token, the endpoint
// and the receiver's last answer.
type DeadLetter struct {
	ID         int64     `json:"id"`
	EventID    string    `json:"event_id"` // the webhook-id receivers dedup by
	Type       string    `json:"type"`
	EventTime  time.Time `json:"event_time"`
	UserID     string    `json:"user_id,omitempty"`
	ProviderID string    `json:"provider_id"`
	Reason     string    `json:"reason,omitempty"`
	Detail     string    `json:"detail,omitempty"`
	Endpoint   string    `json:"endpoint"`
	Attempts   int       `json:"attempts"`
	LastStatus int       `json:"last_status,omitzero"` // 0 (absent): no answer
	LastError  string    `json:"last_error,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	DeadAt     time.Time `json:"dead_at,omitzero"`
	// Status is "dead", or "pending" once sent back to the outbox.
	Status string `json:"status"`
}

// DeadLetterPage is the body of GET /api/v1/webhooks/dead-letters, newest
// first. NextBeforeID, when not 0, is the before_id of the next page.
type DeadLetterPage struct {
	DeadLetters  []DeadLetter `json:"dead_letters"`
	NextBeforeID int64        `json:"next_before_id,omitzero"`
}
