package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-json-experiment/json"

	"github.com/tokenbroker/tokenbroker/apiv1"
)

// OAuthError is an error answer of the token exchange endpoint (RFC 6749
// §5.2): Code is invalid_request, invalid_grant, invalid_target,
// invalid_scope, unauthorized_client, unsupported_grant_type,
// temporarily_unavailable (with RetryAfter) or server_error.
type OAuthError struct {
	Status      int
	Code        string
	Description string
	RetryAfter  time.Duration
}

// Error implements the error interface.
func (e *OAuthError) Error() string {
	s := fmt.Sprintf("tokenbroker: token exchange: %d %s", e.Status, e.Code)
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// ExchangeToken trades a workload's signed JWT (a GitHub Actions OIDC
// token, a Kubernetes service-account token, ...) for the access token of
// a user's link to providerID, by RFC 8693 token exchange at POST
// /oauth2/token. userID may be empty when the workload's trust entry names
// one user (or takes it from a claim). The client's API key is not sent:
// the JWT is the credential. Errors are [*OAuthError]s.
func (c *Client) ExchangeToken(ctx context.Context, subjectToken, providerID, userID string) (*Token, error) {
	form := url.Values{
		"grant_type":           {apiv1.GrantTypeTokenExchange},
		"subject_token":        {subjectToken},
		"subject_token_type":   {apiv1.TokenTypeJWT},
		"requested_token_type": {apiv1.TokenTypeAccessToken},
		"audience":             {providerID},
	}
	if userID != "" {
		form.Set("user", userID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("tokenbroker: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body, err := c.send(req, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("tokenbroker: token exchange: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e apiv1.OAuthError
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			return nil, &OAuthError{Status: resp.StatusCode, Code: "server_error", Description: "unexpected answer " + resp.Status}
		}
		return nil, &OAuthError{Status: resp.StatusCode, Code: e.Error, Description: e.Description, RetryAfter: retryAfter(resp.Header)}
	}
	var r apiv1.ExchangeToken
	if err := json.Unmarshal(body, &r); err != nil || r.AccessToken == "" {
		return nil, fmt.Errorf("tokenbroker: token exchange: malformed answer")
	}
	t := &Token{AccessToken: r.AccessToken, TokenType: r.TokenType, Scopes: strings.Fields(r.Scope)}
	if t.Scopes == nil {
		t.Scopes = []string{}
	}
	if r.ExpiresIn > 0 {
		t.Expiry = time.Now().Add(time.Duration(r.ExpiresIn) * time.Second)
	}
	return t, nil
}
