package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/tokenbroker/tokenbroker"
)

// Validate implements [tokenbroker.Provider]: it asks the kind's user
// endpoint (GitHub /user, GitLab /api/v4/user, Gitea /api/v1/user,
// Bitbucket /2.0/user, Google and OIDC userinfo, Microsoft Graph /me,
// Slack auth.test, or validate_url) who the access token belongs to, and
// maps the answer's members to an account (account_*_field, or the kind's
// defaults). Failures are classified like token endpoint failures: a 401
// is permanent, a rate limit (429, 403 with X-RateLimit-Remaining: 0 or
// Retry-After) is transient, so a caller keeps the token.
func (p *oauthProvider) Validate(ctx context.Context, accessToken string) (*tokenbroker.Account, error) {
	if accessToken == "" {
		return nil, tokenbroker.Errorf(tokenbroker.EINVALID, "provider %s: no access token to validate", p.pc.ID)
	}
	ep, err := p.endpoints(ctx)
	if err != nil {
		return nil, err
	}
	if ep.validate == "" {
		return nil, tokenbroker.Errorf(tokenbroker.ENOTIMPLEMENTED, "provider %s cannot validate tokens", p.pc.ID)
	}
	method := http.MethodGet
	if p.spec.slackEnvelope {
		method = http.MethodPost // Slack's Web API takes POST
	}
	req, err := http.NewRequestWithContext(ctx, method, ep.validate, nil)
	if err != nil {
		return nil, p.fail(err, accessToken)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	var raw map[string]any
	if err := p.do(req, &raw); err != nil {
		return nil, p.fail(err, accessToken)
	}
	if err := p.slackError(raw); err != nil {
		return nil, p.fail(err, accessToken)
	}
	acct := &tokenbroker.Account{
		ID:    pick(raw, p.pc.AccountIDField, p.spec.idFields),
		Login: pick(raw, p.pc.AccountLoginField, p.spec.loginFields),
		Email: pick(raw, p.pc.AccountEmailField, p.spec.emailFields),
	}
	if acct.ID == "" {
		return nil, &tokenbroker.ProviderError{ProviderID: p.pc.ID, StatusCode: http.StatusOK, Code: "invalid_response",
			Description: "the validation answer has no account id (set account_id_field)"}
	}
	return acct, nil
}

// slackError turns Slack's {"ok":false,"error":"..."} (sent with HTTP 200)
// into an *httpError.
func (p *oauthProvider) slackError(raw map[string]any) error {
	if !p.spec.slackEnvelope {
		return nil
	}
	if ok, isBool := raw["ok"].(bool); isBool && !ok {
		code, _ := stringOf(raw["error"])
		return &httpError{status: http.StatusOK, code: orDefault(code, "unknown_error")}
	}
	return nil
}

// pick returns the first non-empty member: field (a dotted path) if set,
// else the first of defaults.
func pick(raw map[string]any, field string, defaults []string) string {
	names := defaults
	if field != "" {
		names = []string{field}
	}
	for _, name := range names {
		var v any = raw
		for _, part := range strings.Split(name, ".") {
			m, ok := v.(map[string]any)
			if !ok {
				v = nil
				break
			}
			v = m[part]
		}
		if s, ok := stringOf(v); ok {
			return s
		}
	}
	return ""
}

// Revoke implements [tokenbroker.Provider]:
//
//   - RFC 7009 (gitlab, google, oidc with a revocation_endpoint, any kind
//     with revoke_url): POST token=<refresh token, else access token> with
//     token_type_hint; revoking the refresh token ends the grant (§2.1);
//   - github: DELETE /applications/{client_id}/grant with HTTP Basic
//     client credentials and the access token in the body, which revokes
//     the whole grant;
//   - slack: auth.revoke with the access token.
//
// Other kinds return an [*tokenbroker.Error] with ENOTIMPLEMENTED.
func (p *oauthProvider) Revoke(ctx context.Context, tok *tokenbroker.Token) error {
	if tok == nil || tok.AccessToken == "" && tok.RefreshToken == "" {
		return tokenbroker.Errorf(tokenbroker.EINVALID, "provider %s: no token to revoke", p.pc.ID)
	}
	ep, err := p.endpoints(ctx)
	if err != nil {
		return err
	}
	if p.spec.revoke == revokeNone || ep.revoke == "" {
		return tokenbroker.Errorf(tokenbroker.ENOTIMPLEMENTED, "provider %s cannot revoke grants", p.pc.ID)
	}
	secrets := []string{tok.AccessToken, tok.RefreshToken}
	switch p.spec.revoke {
	case revokeGitHub:
		if tok.AccessToken == "" {
			return tokenbroker.Errorf(tokenbroker.EINVALID, "provider %s: GitHub revokes a grant by its access token, and there is none", p.pc.ID)
		}
		if p.secret == "" {
			return tokenbroker.Errorf(tokenbroker.EINVALID, "provider %s: GitHub's grant API needs the client secret", p.pc.ID)
		}
		body, _ := json.Marshal(map[string]string{"access_token": tok.AccessToken})
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, ep.revoke, bytes.NewReader(body))
		if err != nil {
			return p.fail(err, secrets...)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/vnd.github+json")
		req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
		req.SetBasicAuth(p.pc.ClientID, p.secret)
		if err := p.do(req, nil); err != nil {
			return p.fail(err, secrets...)
		}
		return nil
	case revokeSlack:
		if tok.AccessToken == "" {
			return tokenbroker.Errorf(tokenbroker.EINVALID, "provider %s: Slack revokes by access token, and there is none", p.pc.ID)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.revoke, nil)
		if err != nil {
			return p.fail(err, secrets...)
		}
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		var raw map[string]any
		if err := p.do(req, &raw); err != nil {
			return p.fail(err, secrets...)
		}
		if err := p.slackError(raw); err != nil {
			return p.fail(err, secrets...)
		}
		return nil
	}
	// RFC 7009 §2.1.
	form := url.Values{"token": {tok.RefreshToken}, "token_type_hint": {"refresh_token"}}
	if tok.RefreshToken == "" {
		form = url.Values{"token": {tok.AccessToken}, "token_type_hint": {"access_token"}}
	}
	style := ep.style
	if p.pc.Kind == KindGoogle {
		style = styleNone // Google's endpoint takes the token alone
	}
	if err := p.postJSON(ctx, ep.revoke, form, style, nil); err != nil {
		return p.fail(err, secrets...)
	}
	return nil
}
