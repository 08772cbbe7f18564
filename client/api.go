package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tokenbroker/tokenbroker/apiv1"
)

// Token is an access token handed out by the broker. It never carries a
// refresh token: refreshing is the broker's job.
type Token = apiv1.Token

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
	return call[Token](ctx, c, http.MethodGet, userPath(userID, "providers", providerID, "token"), q, nil)
}

// Link is the status of a user's link to a provider, without tokens.
type Link = apiv1.Link

// Links lists userID's links (links:read).
func (c *Client) Links(ctx context.Context, userID string) ([]Link, error) {
	var out apiv1.LinkList
	if err := c.do(ctx, http.MethodGet, userPath(userID, "links"), nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Links, nil
}

// Link returns userID's link to providerID (links:read).
func (c *Client) Link(ctx context.Context, userID, providerID string) (*Link, error) {
	return call[Link](ctx, c, http.MethodGet, userPath(userID, "links", providerID), nil, nil)
}

// ImportRequest is an existing token pair to import, for migrating from
// another system.
type ImportRequest = apiv1.ImportRequest

// ImportLink stores a token pair as userID's link to providerID, replacing
// any existing one; the replaced link's grant, if another, is revoked at
// the provider, best effort (links:write).
func (c *Client) ImportLink(ctx context.Context, userID, providerID string, req ImportRequest) (*ImportResult, error) {
	return call[ImportResult](ctx, c, http.MethodPut, userPath(userID, "links", providerID), nil, req)
}

// ImportResult is an imported link; ReplacedRevocation reports the
// revocation of the grant of the active link it replaced, if any
// ("revoked", "not_supported" or "failed: <reason>").
type ImportResult = apiv1.ImportResult

// DeleteResult reports a deleted link's revocation at the provider:
// "revoked", "not_supported" or "failed: <reason>". The link is deleted in
// every case.
type DeleteResult = apiv1.DeleteResult

// DeleteLink removes userID's link to providerID and revokes its grant at
// the provider where that is supported (links:write).
func (c *Client) DeleteLink(ctx context.Context, userID, providerID string) (*DeleteResult, error) {
	return call[DeleteResult](ctx, c, http.MethodDelete, userPath(userID, "links", providerID), nil, nil)
}

// Provider describes a configured provider.
type Provider = apiv1.Provider

// Providers lists the providers the key may act on.
func (c *Client) Providers(ctx context.Context) ([]Provider, error) {
	var out apiv1.ProviderList
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
type ConnectSessionRequest = apiv1.ConnectSessionRequest

// ConnectSession is a created connect session.
type ConnectSession = apiv1.ConnectSession

// CreateConnectSession creates a connect session (links:write).
func (c *Client) CreateConnectSession(ctx context.Context, req ConnectSessionRequest) (*ConnectSession, error) {
	return call[ConnectSession](ctx, c, http.MethodPost, "/api/v1/connect-sessions", nil, req)
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
	var r apiv1.DeviceStart
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
	DevicePending  = apiv1.DevicePending
	DeviceSlowDown = apiv1.DeviceSlowDown
	DeviceComplete = apiv1.DeviceComplete
	DeviceDenied   = apiv1.DeviceDenied
	DeviceExpired  = apiv1.DeviceExpired
)

// DeviceStatus is the state of a device flow; Link is set once complete.
type DeviceStatus = apiv1.DeviceStatus

// PollDevice polls a device flow once (links:write). On "slow_down" wait
// longer between polls (RFC 8628 §3.5).
func (c *Client) PollDevice(ctx context.Context, userID, providerID, id string) (*DeviceStatus, error) {
	return call[DeviceStatus](ctx, c, http.MethodGet, userPath(userID, "links", providerID, "device", id), nil, nil)
}

// APIKeyRequest describes a key to create.
type APIKeyRequest = apiv1.APIKeyRequest

// APIKey describes a key, without its secret.
type APIKey = apiv1.APIKey

// CreatedAPIKey is a new key with its plaintext, shown only this once.
type CreatedAPIKey = apiv1.CreatedAPIKey

// CreateAPIKey creates a key (admin).
func (c *Client) CreateAPIKey(ctx context.Context, req APIKeyRequest) (*CreatedAPIKey, error) {
	return call[CreatedAPIKey](ctx, c, http.MethodPost, "/api/v1/api-keys", nil, req)
}

// ListAPIKeys lists every key, revoked ones too (admin).
func (c *Client) ListAPIKeys(ctx context.Context) ([]APIKey, error) {
	var out apiv1.APIKeyList
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
type AuditEvent = apiv1.AuditEvent

// AuditPage is one page of the audit log, newest first. NextBeforeID,
// when not 0, is the BeforeID of the next (older) page.
type AuditPage = apiv1.AuditPage

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
	return call[AuditPage](ctx, c, http.MethodGet, "/api/v1/audit", v, nil)
}
