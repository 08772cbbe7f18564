package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// LinkStatus is a link as the API shows it: its state and metadata,
// never a token.
type LinkStatus struct {
	UserID        string     `json:"user_id"`
	ProviderID    string     `json:"provider_id"`
	State         string     `json:"state"`
	FailureReason string     `json:"failure_reason,omitempty"`
	AccountID     string     `json:"account_id,omitempty"`
	AccountLogin  string     `json:"account_login,omitempty"`
	Scopes        []string   `json:"scopes"`
	Expiry        *time.Time `json:"expiry,omitempty"`
	RefreshedAt   *time.Time `json:"refreshed_at,omitempty"`
	CreatedAt     *time.Time `json:"created_at,omitempty"`
	UpdatedAt     *time.Time `json:"updated_at,omitempty"`
	Generation    int64      `json:"generation"`
	HasRefresh    bool       `json:"has_refresh_token"`
}

func linkStatus(l *tokenbroker.Link) LinkStatus {
	st := LinkStatus{
		UserID:        l.UserID,
		ProviderID:    l.ProviderID,
		State:         string(l.State),
		FailureReason: l.FailureReason,
		AccountID:     l.AccountID,
		AccountLogin:  l.AccountLogin,
		Scopes:        l.Token.Scopes,
		Expiry:        timePtr(l.Token.Expiry),
		RefreshedAt:   timePtr(l.RefreshedAt),
		CreatedAt:     timePtr(l.CreatedAt),
		UpdatedAt:     timePtr(l.UpdatedAt),
		Generation:    l.Generation,
		HasRefresh:    l.Token.RefreshToken != "",
	}
	if st.Scopes == nil {
		st.Scopes = []string{}
	}
	return st
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// LinkList is the body of GET /api/v1/users/{user_id}/links.
type LinkList struct {
	Links []LinkStatus `json:"links"`
}

func (s *Server) listLinks(w http.ResponseWriter, r *http.Request, k *caller) error {
	userID, _, err := pathIDs(r)
	if err != nil {
		return err
	}
	if err := authorize(k, tokenbroker.ScopeLinksRead, userID, ""); err != nil {
		return err
	}
	links, err := s.store.ListLinks(r.Context(), userID)
	if err != nil {
		return err
	}
	out := LinkList{Links: make([]LinkStatus, 0, len(links))}
	for _, l := range links {
		// A key restricted to some providers sees only their links.
		if k.AllowsProvider(l.ProviderID) {
			out.Links = append(out.Links, linkStatus(l))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getLink(w http.ResponseWriter, r *http.Request, k *caller) error {
	userID, providerID, err := pathIDs(r)
	if err != nil {
		return err
	}
	if err := authorize(k, tokenbroker.ScopeLinksRead, userID, providerID); err != nil {
		return err
	}
	l, err := s.store.GetLink(r.Context(), userID, providerID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, linkStatus(l))
	return nil
}

// ImportRequest is the body of PUT /api/v1/users/{user_id}/links/{provider_id}:
// an existing token pair, for migrating from another system.
type ImportRequest struct {
	AccessToken  string            `json:"access_token"`
	RefreshToken string            `json:"refresh_token"`
	TokenType    string            `json:"token_type"`
	Expiry       *time.Time        `json:"expiry"`
	Scopes       []string          `json:"scopes"`
	IDToken      string            `json:"id_token"`
	Extra        map[string]string `json:"extra"`
}

// Limits on imported fields, well under MaxBodyBytes in total.
const (
	maxTokenLen  = 16 << 10
	maxScopes    = 100
	maxScopeLen  = 256
	maxExtra     = 32
	maxExtraKey  = 64
	maxExtraVal  = 4096
	maxTokenType = 32
)

func (q *ImportRequest) validate() error {
	if q.AccessToken == "" && q.RefreshToken == "" {
		return tokenbroker.Errorf(tokenbroker.EINVALID, "access_token or refresh_token is required")
	}
	if len(q.AccessToken) > maxTokenLen || len(q.RefreshToken) > maxTokenLen || len(q.IDToken) > maxTokenLen {
		return tokenbroker.Errorf(tokenbroker.EINVALID, "tokens may be at most %d bytes", maxTokenLen)
	}
	if len(q.TokenType) > maxTokenType {
		return tokenbroker.Errorf(tokenbroker.EINVALID, "token_type is too long")
	}
	if len(q.Scopes) > maxScopes {
		return tokenbroker.Errorf(tokenbroker.EINVALID, "at most %d scopes", maxScopes)
	}
	for _, sc := range q.Scopes {
		if sc == "" || len(sc) > maxScopeLen {
			return tokenbroker.Errorf(tokenbroker.EINVALID, "scopes must be non-empty and at most %d bytes", maxScopeLen)
		}
	}
	if len(q.Extra) > maxExtra {
		return tokenbroker.Errorf(tokenbroker.EINVALID, "at most %d extra members", maxExtra)
	}
	for key, v := range q.Extra {
		if key == "" || len(key) > maxExtraKey || len(v) > maxExtraVal {
			return tokenbroker.Errorf(tokenbroker.EINVALID, "extra: keys 1-%d bytes, values at most %d bytes", maxExtraKey, maxExtraVal)
		}
	}
	return nil
}

// putLink imports a token pair. The access token, if it is not expired,
// is validated at the provider: a provider that cannot validate, or fails
// transiently, does not stop the import (the link is stored without
// account details); a provider that rejects the token does.
func (s *Server) putLink(w http.ResponseWriter, r *http.Request, k *caller) error {
	userID, providerID, err := pathIDs(r)
	if err != nil {
		return err
	}
	if err := authorize(k, tokenbroker.ScopeLinksWrite, userID, providerID); err != nil {
		return err
	}
	var q ImportRequest
	if err := decodeJSON(w, r, &q); err != nil {
		return err
	}
	if err := q.validate(); err != nil {
		return err
	}
	p, err := s.providers.Provider(providerID)
	if err != nil {
		return err
	}
	tok := tokenbroker.Token{
		AccessToken:  q.AccessToken,
		TokenType:    q.TokenType,
		RefreshToken: q.RefreshToken,
		IDToken:      q.IDToken,
		Scopes:       q.Scopes,
		Extra:        q.Extra,
	}
	if q.Expiry != nil {
		tok.Expiry = q.Expiry.UTC()
	}
	if tok.TokenType == "" {
		tok.TokenType = "Bearer"
	}
	l := &tokenbroker.Link{UserID: userID, ProviderID: providerID, Token: tok}
	if tok.ValidFor(s.now(), 0) {
		acct, err := s.validate(r.Context(), p, tok.AccessToken)
		if err != nil {
			s.audit(k, tokenbroker.AuditLinkImport, userID, providerID, err, "validation failed")
			return err
		}
		if acct != nil {
			l.AccountID, l.AccountLogin = acct.ID, acct.Login
		}
	}
	stored, err := s.store.PutLink(r.Context(), l)
	s.audit(k, tokenbroker.AuditLinkImport, userID, providerID, err, "")
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, linkStatus(stored))
	return nil
}

// validate asks p who the access token belongs to. It returns (nil, nil)
// when the provider cannot tell (not implemented) or fails transiently: the
// caller goes on without account details. A permanent rejection is an
// invalid_request error.
func (s *Server) validate(ctx context.Context, p tokenbroker.Provider, accessToken string) (*tokenbroker.Account, error) {
	ctx, cancel := s.providerCtx(ctx)
	defer cancel()
	acct, err := p.Validate(ctx, accessToken)
	if err == nil {
		return acct, nil
	}
	if tokenbroker.ErrorCode(err) == tokenbroker.ENOTIMPLEMENTED {
		return nil, nil
	}
	var pe *tokenbroker.ProviderError
	if errors.As(err, &pe) && (pe.Permanent || pe.StatusCode == http.StatusUnauthorized) {
		return nil, tokenbroker.Errorf(tokenbroker.EINVALID, "provider %s rejected the access token (%s)", p.ID(), pe.Reason())
	}
	s.log.WarnContext(ctx, "token validation skipped: provider failed", "provider", p.ID(), "err", err.Error())
	return nil, nil
}

// DeleteResponse is the body of DELETE /api/v1/users/{user_id}/links/{provider_id}.
// Revocation is "revoked", "not_supported" or "failed: <reason>".
type DeleteResponse struct {
	Deleted    bool   `json:"deleted"`
	Revocation string `json:"revocation"`
}

// deleteLink revokes the grant at the provider (best effort, bounded by
// ProviderTimeout) and then removes the link whatever the provider said.
func (s *Server) deleteLink(w http.ResponseWriter, r *http.Request, k *caller) error {
	userID, providerID, err := pathIDs(r)
	if err != nil {
		return err
	}
	if err := authorize(k, tokenbroker.ScopeLinksWrite, userID, providerID); err != nil {
		return err
	}
	l, err := s.store.GetLink(r.Context(), userID, providerID)
	if err != nil {
		return err
	}
	revocation := s.revoke(r.Context(), providerID, &l.Token)
	err = s.store.DeleteLink(r.Context(), userID, providerID)
	s.audit(k, tokenbroker.AuditLinkDelete, userID, providerID, err, "revocation: "+revocation)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, DeleteResponse{Deleted: true, Revocation: revocation})
	return nil
}

func (s *Server) revoke(ctx context.Context, providerID string, tok *tokenbroker.Token) string {
	p, err := s.providers.Provider(providerID)
	if err != nil {
		return "failed: provider is not configured"
	}
	ctx, cancel := s.providerCtx(ctx)
	defer cancel()
	err = p.Revoke(ctx, tok)
	if err == nil {
		return "revoked"
	}
	if tokenbroker.ErrorCode(err) == tokenbroker.ENOTIMPLEMENTED {
		return "not_supported"
	}
	s.log.WarnContext(ctx, "revocation failed; deleting the link anyway", "provider", providerID, "err", err.Error())
	var pe *tokenbroker.ProviderError
	switch {
	case errors.As(err, &pe) && (pe.Code != "" || pe.StatusCode != 0):
		return "failed: " + pe.Reason()
	case errors.Is(err, context.DeadlineExceeded):
		return "failed: provider timed out"
	default:
		return "failed: provider unreachable"
	}
}
