package httpapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apiv1"
)

// linkStatus is l as the API shows it: its state and metadata, never a
// token.
func linkStatus(l *tokenbroker.Link) apiv1.Link {
	return apiv1.Link{
		UserID:          l.UserID,
		ProviderID:      l.ProviderID,
		State:           string(l.State),
		ReauthReason:    string(l.ReauthReason),
		FailureReason:   l.FailureReason,
		AccountID:       l.AccountID,
		AccountLogin:    l.AccountLogin,
		Scopes:          l.Token.Scopes,
		Expiry:          l.Token.Expiry.UTC(),
		RefreshedAt:     l.RefreshedAt.UTC(),
		LastUsedAt:      l.LastUsedAt.UTC(),
		CreatedAt:       l.CreatedAt.UTC(),
		UpdatedAt:       l.UpdatedAt.UTC(),
		Generation:      l.Generation,
		HasRefreshToken: l.Token.RefreshToken != "",
	}
}

func (s *Server) listLinks(w http.ResponseWriter, r *http.Request, k *caller) error {
	userID, _, err := authorizedIDs(r, k, tokenbroker.ScopeLinksRead)
	if err != nil {
		return err
	}
	links, err := s.store.ListLinks(r.Context(), userID)
	if err != nil {
		return err
	}
	out := apiv1.LinkList{Links: make([]apiv1.Link, 0, len(links))}
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
	userID, providerID, err := authorizedIDs(r, k, tokenbroker.ScopeLinksRead)
	if err != nil {
		return err
	}
	l, err := s.store.GetLink(r.Context(), userID, providerID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, linkStatus(l))
	return nil
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

func validateImport(q *apiv1.ImportRequest) error {
	if q.AccessToken == "" && q.RefreshToken == "" {
		return tokenbroker.Errorf(tokenbroker.EINVALID, "access_token or refresh_token is required")
	}
	if len(q.AccessToken) > maxTokenLen || len(q.RefreshToken) > maxTokenLen || len(q.IDToken) > maxTokenLen {
		return tokenbroker.Errorf(tokenbroker.EINVALID, "tokens may be at most %d bytes", maxTokenLen)
	}
	if len(q.TokenType) > maxTokenType {
		return tokenbroker.Errorf(tokenbroker.EINVALID, "token_type is too long")
	}
	if err := tokenbroker.CheckText("token_type", q.TokenType); err != nil {
		return err
	}
	if len(q.Scopes) > maxScopes {
		return tokenbroker.Errorf(tokenbroker.EINVALID, "at most %d scopes", maxScopes)
	}
	for _, sc := range q.Scopes {
		if sc == "" || len(sc) > maxScopeLen {
			return tokenbroker.Errorf(tokenbroker.EINVALID, "scopes must be non-empty and at most %d bytes", maxScopeLen)
		}
		if err := tokenbroker.CheckText("scopes", sc); err != nil {
			return err
		}
	}
	if len(q.Extra) > maxExtra {
		return tokenbroker.Errorf(tokenbroker.EINVALID, "at most %d extra members", maxExtra)
	}
	for key, v := range q.Extra {
		if key == "" || len(key) > maxExtraKey || len(v) > maxExtraVal {
			return tokenbroker.Errorf(tokenbroker.EINVALID, "extra: keys 1-%d bytes, values at most %d bytes", maxExtraKey, maxExtraVal)
		}
		if err := tokenbroker.CheckText("extra", key); err != nil {
			return err
		}
	}
	return nil
}

// putLink imports a token pair. The access token, if it is not expired,
// is validated at the provider: a provider that cannot validate, or fails
// transiently, does not stop the import (the link is stored without
// account details); a provider that rejects the token does. When the
// import replaces an active link holding another grant, that grant is
// revoked at the provider once the new link is stored (best effort, as
// deleteLink does): the answer and the audit trail report the outcome.
func (s *Server) putLink(w http.ResponseWriter, r *http.Request, k *caller) error {
	userID, providerID, err := authorizedIDs(r, k, tokenbroker.ScopeLinksWrite)
	if err != nil {
		return err
	}
	var q apiv1.ImportRequest
	if err := decodeJSON(w, r, &q); err != nil {
		return err
	}
	if err := validateImport(&q); err != nil {
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
		// What is left of its life is all that is known of its lifetime.
		tok.IssuedAt = s.now().UTC()
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
	old, err := s.store.GetLink(r.Context(), userID, providerID)
	if err != nil && !tokenbroker.IsNotFound(err) {
		return err
	}
	replaces := old != nil && old.State.Refreshable() && !sameGrant(&old.Token, &tok)
	detail := ""
	if replaces {
		detail = "replaces an active grant"
	}
	// The import is recorded with the link it writes, in one transaction.
	stored, err := s.store.PutLink(r.Context(), l, tokenbroker.Record{Audit: []tokenbroker.AuditEvent{
		s.event(k, tokenbroker.AuditLinkImport, userID, providerID, detail),
	}})
	if err != nil {
		s.audit(k, tokenbroker.AuditLinkImport, userID, providerID, err, "")
		return err
	}
	out := apiv1.ImportResult{Link: linkStatus(stored)}
	if replaces {
		out.ReplacedRevocation = s.revoke(r.Context(), providerID, &old.Token)
		s.audit(k, tokenbroker.AuditReplacedGrantRevoke, userID, providerID, nil, "replaced grant revocation: "+out.ReplacedRevocation)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// sameGrant reports whether two tokens are of one grant as far as the
// broker can tell: the same refresh token, or, without refresh tokens, the
// same access token. Revoking a grant the new link still uses would break
// it.
func sameGrant(a, b *tokenbroker.Token) bool {
	if a.RefreshToken != "" || b.RefreshToken != "" {
		return a.RefreshToken == b.RefreshToken
	}
	return a.AccessToken == b.AccessToken
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
	if errors.As(err, &pe) && (!pe.Transient() || pe.StatusCode == http.StatusUnauthorized) {
		return nil, tokenbroker.Errorf(tokenbroker.EINVALID, "provider %s rejected the access token (%s)", p.ID(), pe.Reason())
	}
	s.log.WarnContext(ctx, "token validation skipped: provider failed", "provider", p.ID(), "err", err.Error())
	return nil, nil
}

// deleteLink revokes the grant at the provider (best effort, bounded by
// ProviderTimeout) and then removes the link whatever the provider said.
func (s *Server) deleteLink(w http.ResponseWriter, r *http.Request, k *caller) error {
	userID, providerID, err := authorizedIDs(r, k, tokenbroker.ScopeLinksWrite)
	if err != nil {
		return err
	}
	revocation, err := s.DeleteLinkRevoking(r.Context(), userID, providerID, func(revocation string) tokenbroker.AuditEvent {
		return s.event(k, tokenbroker.AuditLinkDelete, userID, providerID, "revocation: "+revocation)
	})
	if err != nil && revocation == "" {
		return err // no link, nothing done
	}
	if err != nil {
		s.audit(k, tokenbroker.AuditLinkDelete, userID, providerID, err, "revocation: "+revocation)
		return err
	}
	writeJSON(w, http.StatusOK, apiv1.DeleteResult{Deleted: true, Revocation: revocation})
	return nil
}

func (s *Server) revoke(ctx context.Context, providerID string, tok *tokenbroker.Token) string {
	p, err := s.providers.Provider(providerID)
	if err != nil {
		return apiv1.RevocationFailedPrefix + "provider is not configured"
	}
	ctx, cancel := s.providerCtx(ctx)
	defer cancel()
	err = p.Revoke(ctx, tok)
	if err == nil {
		return apiv1.RevocationRevoked
	}
	if tokenbroker.ErrorCode(err) == tokenbroker.ENOTIMPLEMENTED {
		return apiv1.RevocationNotSupported
	}
	s.log.WarnContext(ctx, "revocation failed; deleting the link anyway", "provider", providerID, "err", err.Error())
	var pe *tokenbroker.ProviderError
	switch {
	case errors.As(err, &pe) && (pe.Code != "" || pe.StatusCode != 0):
		return apiv1.RevocationFailedPrefix + pe.Reason()
	case errors.Is(err, context.DeadlineExceeded):
		return apiv1.RevocationFailedPrefix + "provider timed out"
	default:
		return apiv1.RevocationFailedPrefix + "provider unreachable"
	}
}
