package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Token is an access token handed out by the broker. It never carries a
// refresh token: refreshing is the broker's job.
type Token struct {
	AccessToken string            `json:"access_token"`
	TokenType   string            `json:"token_type"`
	Expiry      time.Time         `json:"expiry"` // zero: does not expire
	Scopes      []string          `json:"scopes"`
	Extra       map[string]string `json:"extra,omitempty"`
}

// Token returns userID's access token for providerID, valid for at least
// minValid (0: simply not expired). It needs the tokens:read scope.
//
// A broken link is an [*Error] with code reauth_required whose ConnectURL,
// when the key may create connect sessions, is where to send the user.
func (c *Client) Token(ctx context.Context, userID, providerID string, minValid time.Duration) (*Token, error) {
	var q url.Values
	if minValid > 0 {
		q = url.Values{"min_valid": {strconv.FormatInt(int64((minValid+time.Second-1)/time.Second), 10)}}
	}
	var t Token
	if err := c.do(ctx, http.MethodGet, userPath(userID, "providers", providerID, "token"), q, nil, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// Link is the status of a user's link to a provider, without tokens.
type Link struct {
	UserID          string    `json:"user_id"`
	ProviderID      string    `json:"provider_id"`
	State           string    `json:"state"` // "active" or "reauth_required"
	FailureReason   string    `json:"failure_reason,omitempty"`
	AccountID       string    `json:"account_id,omitempty"`
	AccountLogin    string    `json:"account_login,omitempty"`
	Scopes          []string  `json:"scopes"`
	Expiry          time.Time `json:"expiry"`
	RefreshedAt     time.Time `json:"refreshed_at"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
	Generation      int64     `json:"generation"`
	HasRefreshToken bool      `json:"has_refresh_token"`
}

// Links lists userID's links (links:read).
func (c *Client) Links(ctx context.Context, userID string) ([]Link, error) {
	var out struct {
		Links []Link `json:"links"`
	}
	if err := c.do(ctx, http.MethodGet, userPath(userID, "links"), nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Links, nil
}

// Link returns userID's link to providerID (links:read).
func (c *Client) Link(ctx context.Context, userID, providerID string) (*Link, error) {
	var l Link
	if err := c.do(ctx, http.MethodGet, userPath(userID, "links", providerID), nil, nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// ImportRequest is an existing token pair to import, for migrating from
// another system.
type ImportRequest struct {
	AccessToken  string            `json:"access_token,omitempty"`
	RefreshToken string            `json:"refresh_token,omitempty"`
	TokenType    string            `json:"token_type,omitempty"`
	Expiry       *time.Time        `json:"expiry,omitempty"`
	Scopes       []string          `json:"scopes,omitempty"`
	IDToken      string            `json:"id_token,omitempty"`
	Extra        map[string]string `json:"extra,omitempty"`
}

// ImportLink stores a token pair as userID's link to providerID, replacing
// any existing one (links:write).
func (c *Client) ImportLink(ctx context.Context, userID, providerID string, req ImportRequest) (*Link, error) {
	var l Link
	if err := c.do(ctx, http.MethodPut, userPath(userID, "links", providerID), nil, req, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// DeleteResult reports a deleted link's revocation at the provider:
// "revoked", "not_supported" or "failed: <reason>". The link is deleted in
// every case.
type DeleteResult struct {
	Deleted    bool   `json:"deleted"`
	Revocation string `json:"revocation"`
}

// DeleteLink removes userID's link to providerID and revokes its grant at
// the provider where that is supported (links:write).
func (c *Client) DeleteLink(ctx context.Context, userID, providerID string) (*DeleteResult, error) {
	var r DeleteResult
	if err := c.do(ctx, http.MethodDelete, userPath(userID, "links", providerID), nil, nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Provider describes a configured provider.
type Provider struct {
	ID             string   `json:"id"`
	Kind           string   `json:"kind"`
	DisplayName    string   `json:"display_name"`
	Scopes         []string `json:"scopes"`
	SupportsDevice bool     `json:"supports_device"`
	SupportsRevoke bool     `json:"supports_revoke"`
	Hosts          string   `json:"hosts,omitempty"`
}

// Providers lists the providers the key may act on.
func (c *Client) Providers(ctx context.Context) ([]Provider, error) {
	var out struct {
		Providers []Provider `json:"providers"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/providers", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Providers, nil
}

// ConnectSessionRequest asks for a connect session: a short-lived,
// single-use URL to give UserID to connect accounts in the browser.
// Providers limits the session (empty: all the key may use); ReturnURL,
// which must be on the server's allow-list, is where the browser goes
// afterwards.
type ConnectSessionRequest struct {
	UserID    string   `json:"user_id"`
	Providers []string `json:"providers,omitempty"`
	ReturnURL string   `json:"return_url,omitempty"`
}

// ConnectSession is a created connect session.
type ConnectSession struct {
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// CreateConnectSession creates a connect session (links:write).
func (c *Client) CreateConnectSession(ctx context.Context, req ConnectSessionRequest) (*ConnectSession, error) {
	var s ConnectSession
	if err := c.do(ctx, http.MethodPost, "/api/v1/connect-sessions", nil, req, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// DeviceAuthorization is a started device flow (RFC 8628 §3.2): show
// UserCode and VerificationURI to the user, then call
// [Client.PollDevice] every Interval until it is no longer pending.
type DeviceAuthorization struct {
	ID                      string
	UserCode                string
	VerificationURI         string
	VerificationURIComplete string
	ExpiresAt               time.Time
	Interval                time.Duration
}

// StartDevice starts a device flow connecting userID to providerID
// (links:write).
func (c *Client) StartDevice(ctx context.Context, userID, providerID string) (*DeviceAuthorization, error) {
	var r struct {
		ID                      string    `json:"id"`
		UserCode                string    `json:"user_code"`
		VerificationURI         string    `json:"verification_uri"`
		VerificationURIComplete string    `json:"verification_uri_complete"`
		ExpiresAt               time.Time `json:"expires_at"`
		Interval                int       `json:"interval"`
	}
	if err := c.do(ctx, http.MethodPost, userPath(userID, "links", providerID, "device"), nil, nil, &r); err != nil {
		return nil, err
	}
	return &DeviceAuthorization{
		ID: r.ID, UserCode: r.UserCode, VerificationURI: r.VerificationURI,
		VerificationURIComplete: r.VerificationURIComplete, ExpiresAt: r.ExpiresAt,
		Interval: time.Duration(r.Interval) * time.Second,
	}, nil
}

// Device flow statuses of [DeviceStatus].
const (
	DevicePending  = "pending"
	DeviceSlowDown = "slow_down"
	DeviceComplete = "complete"
	DeviceDenied   = "denied"
	DeviceExpired  = "expired"
)

// DeviceStatus is the state of a device flow; Link is set once complete.
type DeviceStatus struct {
	Status string `json:"status"`
	Link   *Link  `json:"link,omitempty"`
}

// PollDevice polls a device flow once (links:write). On "slow_down" wait
// longer between polls (RFC 8628 §3.5).
func (c *Client) PollDevice(ctx context.Context, userID, providerID, id string) (*DeviceStatus, error) {
	var s DeviceStatus
	if err := c.do(ctx, http.MethodGet, userPath(userID, "links", providerID, "device", id), nil, nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// APIKeyRequest describes a key to create.
type APIKeyRequest struct {
	Name      string   `json:"name"`
	Scopes    []string `json:"scopes"`
	Users     []string `json:"users,omitempty"`
	Providers []string `json:"providers,omitempty"`
}

// APIKey describes a key, without its secret.
type APIKey struct {
	ID        int64     `json:"id"`
	Prefix    string    `json:"prefix"`
	Name      string    `json:"name"`
	Scopes    []string  `json:"scopes"`
	Users     []string  `json:"users"`
	Providers []string  `json:"providers"`
	CreatedAt time.Time `json:"created_at"`
	RevokedAt time.Time `json:"revoked_at"` // zero: not revoked
}

// CreatedAPIKey is a new key with its plaintext, shown only this once.
type CreatedAPIKey struct {
	APIKey
	Key string `json:"key"`
}

// CreateAPIKey creates a key (admin).
func (c *Client) CreateAPIKey(ctx context.Context, req APIKeyRequest) (*CreatedAPIKey, error) {
	var k CreatedAPIKey
	if err := c.do(ctx, http.MethodPost, "/api/v1/api-keys", nil, req, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// ListAPIKeys lists every key, revoked ones too (admin).
func (c *Client) ListAPIKeys(ctx context.Context) ([]APIKey, error) {
	var out struct {
		Keys []APIKey `json:"keys"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/api-keys", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Keys, nil
}

// RevokeAPIKey revokes the key with the id (admin).
func (c *Client) RevokeAPIKey(ctx context.Context, id int64) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/api-keys/"+strconv.FormatInt(id, 10), nil, nil, nil)
}

// AuditQuery filters the audit log. Zero fields match everything.
type AuditQuery struct {
	UserID     string
	ProviderID string
	Action     string
	Since      time.Time // inclusive
	Until      time.Time // exclusive
	BeforeID   int64     // page backwards from this id
	Limit      int       // 0: 100; at most 1000
}

// AuditEvent is one audit log entry. It never holds a token.
type AuditEvent struct {
	ID         int64     `json:"id"`
	Time       time.Time `json:"time"`
	Actor      string    `json:"actor"`
	Action     string    `json:"action"`
	UserID     string    `json:"user_id,omitempty"`
	ProviderID string    `json:"provider_id,omitempty"`
	Outcome    string    `json:"outcome"`
	Detail     string    `json:"detail,omitempty"`
}

// AuditPage is one page of the audit log, newest first. NextBeforeID,
// when not 0, is the BeforeID of the next (older) page.
type AuditPage struct {
	Events       []AuditEvent `json:"events"`
	NextBeforeID int64        `json:"next_before_id"`
}

// Audit reads the audit log (admin).
func (c *Client) Audit(ctx context.Context, q AuditQuery) (*AuditPage, error) {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set("user", q.UserID)
	set("provider", q.ProviderID)
	set("action", q.Action)
	if !q.Since.IsZero() {
		set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		set("until", q.Until.UTC().Format(time.RFC3339Nano))
	}
	if q.BeforeID > 0 {
		set("before_id", strconv.FormatInt(q.BeforeID, 10))
	}
	if q.Limit > 0 {
		set("limit", strconv.Itoa(q.Limit))
	}
	var p AuditPage
	if err := c.do(ctx, http.MethodGet, "/api/v1/audit", v, nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}
