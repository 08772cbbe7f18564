package httpapi

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apiv1"
	"github.com/tokenbroker/tokenbroker/internal/returnurl"
)

func (s *Server) createConnectSession(w http.ResponseWriter, r *http.Request, k *caller) error {
	var q apiv1.ConnectSessionRequest
	if err := decodeJSON(w, r, &q); err != nil {
		return err
	}
	if err := tokenbroker.ValidateUserID(q.UserID); err != nil {
		return err
	}
	if err := authorize(k, tokenbroker.ScopeLinksWrite, q.UserID, ""); err != nil {
		return err
	}
	if len(q.Providers) > 100 {
		return tokenbroker.Errorf(tokenbroker.EINVALID, "at most 100 providers")
	}
	providers := make([]string, 0, len(q.Providers))
	for _, id := range q.Providers {
		if err := tokenbroker.ValidateProviderID(id); err != nil {
			return err
		}
		if _, err := s.providers.Provider(id); err != nil {
			if tokenbroker.IsNotFound(err) {
				return tokenbroker.Errorf(tokenbroker.EINVALID, "unknown provider %q", id)
			}
			return err
		}
		if err := authorize(k, "", "", id); err != nil {
			return err
		}
		if !slices.Contains(providers, id) {
			providers = append(providers, id)
		}
	}
	if len(providers) == 0 && len(k.Providers) > 0 {
		// A key restricted to some providers may only invite to those.
		for _, p := range s.providers.List() {
			if k.AllowsProvider(p.ID()) {
				providers = append(providers, p.ID())
			}
		}
		if len(providers) == 0 {
			return tokenbroker.Errorf(tokenbroker.EFORBIDDEN, "this API key may not act on any configured provider")
		}
	}
	if q.ReturnURL != "" && !returnurl.Allowed(q.ReturnURL, s.cfg.ReturnURLAllowList) {
		return tokenbroker.Errorf(tokenbroker.EINVALID, "return_url is not on the server's allow-list")
	}
	sess, err := s.newConnectSession(r.Context(), k, q.UserID, providers, q.ReturnURL)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, apiv1.ConnectSession{URL: s.connectURL(sess.ID), ExpiresAt: sess.ExpiresAt.UTC()})
	return nil
}

// newConnectSession stores a session expiring ConnectSessionTTL from the
// database's clock, which is the clock that will judge it.
func (s *Server) newConnectSession(ctx context.Context, k *caller, userID string, providers []string, returnURL string) (*tokenbroker.ConnectSession, error) {
	id, err := randomID(s.rand)
	if err != nil {
		return nil, err
	}
	now, err := s.store.Now(ctx)
	if err != nil {
		return nil, err
	}
	sess := &tokenbroker.ConnectSession{
		ID:        id,
		UserID:    userID,
		Providers: providers,
		ReturnURL: returnURL,
		CreatedBy: k.createdBy(),
		CreatedAt: now,
		ExpiresAt: now.Add(s.cfg.ConnectSessionTTL),
	}
	if err := s.store.CreateConnectSession(ctx, sess); err != nil {
		return nil, err
	}
	return sess, nil
}

func (s *Server) connectURL(id string) string { return s.cfg.BaseURL + "/connect/" + id }

// defaultDeviceInterval is RFC 8628 §3.2's default polling interval.
const defaultDeviceInterval = 5 * time.Second

func (s *Server) startDevice(w http.ResponseWriter, r *http.Request, k *caller) error {
	userID, providerID, err := authorizedIDs(r, k, tokenbroker.ScopeLinksWrite)
	if err != nil {
		return err
	}
	p, err := s.providers.Provider(providerID)
	if err != nil {
		return err
	}
	id, err := randomID(s.rand)
	if err != nil {
		return err
	}
	pctx, cancel := s.providerCtx(r.Context())
	da, err := p.DeviceAuth(pctx)
	cancel()
	if err != nil {
		if tokenbroker.ErrorCode(err) == tokenbroker.ENOTIMPLEMENTED {
			return tokenbroker.Errorf(tokenbroker.EINVALID, "provider %s does not support the device authorization grant", providerID)
		}
		return err
	}
	now, err := s.store.Now(r.Context())
	if err != nil {
		return err
	}
	interval := da.Interval
	if interval <= 0 {
		interval = defaultDeviceInterval
	}
	expires := da.Expiry
	if expires.IsZero() {
		expires = now.Add(s.cfg.ConnectSessionTTL)
	}
	req := &tokenbroker.AuthRequest{
		ID:         id,
		Kind:       tokenbroker.AuthRequestDevice,
		UserID:     userID,
		ProviderID: providerID,
		Secret:     da.DeviceCode, // sealed by the store's crypt layer
		UserCode:   da.UserCode,
		VerifyURI:  da.VerificationURI,
		Interval:   interval,
		CreatedAt:  now,
		ExpiresAt:  expires,
	}
	if err := s.store.CreateAuthRequest(r.Context(), req); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, apiv1.DeviceStart{
		ID:                      id,
		UserCode:                da.UserCode,
		VerificationURI:         da.VerificationURI,
		VerificationURIComplete: da.VerificationURIComplete,
		ExpiresAt:               expires.UTC(),
		Interval:                int((interval + time.Second - 1) / time.Second),
	})
	return nil
}

// pollDevice polls the provider once (RFC 8628 §3.4) and, once the user
// approved, validates the token, stores the link and ends the flow.
func (s *Server) pollDevice(w http.ResponseWriter, r *http.Request, k *caller) error {
	userID, providerID, err := authorizedIDs(r, k, tokenbroker.ScopeLinksWrite)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	if len(id) != 43 {
		return tokenbroker.Errorf(tokenbroker.ENOTFOUND, "no such device flow (unknown, finished or expired)")
	}
	req, err := s.store.GetAuthRequest(r.Context(), id)
	if err != nil {
		if tokenbroker.IsNotFound(err) {
			return tokenbroker.Errorf(tokenbroker.ENOTFOUND, "no such device flow (unknown, finished or expired)")
		}
		return err
	}
	if req.Kind != tokenbroker.AuthRequestDevice || req.UserID != userID || req.ProviderID != providerID {
		return tokenbroker.Errorf(tokenbroker.ENOTFOUND, "no such device flow (unknown, finished or expired)")
	}
	p, err := s.providers.Provider(providerID)
	if err != nil {
		return err
	}
	pctx, cancel := s.providerCtx(r.Context())
	tok, err := p.PollDevice(pctx, req.Secret)
	cancel()
	if err != nil {
		var pe *tokenbroker.ProviderError
		if !errors.As(err, &pe) {
			return err
		}
		switch pe.Code {
		case "authorization_pending":
			writeJSON(w, http.StatusOK, apiv1.DeviceStatus{Status: apiv1.DevicePending})
			return nil
		case "slow_down":
			writeJSON(w, http.StatusOK, apiv1.DeviceStatus{Status: apiv1.DeviceSlowDown})
			return nil
		case "access_denied":
			s.endDevice(r.Context(), id)
			s.audit(k, tokenbroker.AuditLinkCreate, userID, providerID, tokenbroker.Errorf(tokenbroker.EFORBIDDEN, "denied"), "device flow denied by the user")
			writeJSON(w, http.StatusOK, apiv1.DeviceStatus{Status: apiv1.DeviceDenied})
			return nil
		case "expired_token":
			s.endDevice(r.Context(), id)
			writeJSON(w, http.StatusOK, apiv1.DeviceStatus{Status: apiv1.DeviceExpired})
			return nil
		}
		return err
	}
	l := &tokenbroker.Link{UserID: userID, ProviderID: providerID, Token: *tok}
	acct, err := s.validate(r.Context(), p, tok.AccessToken)
	if err != nil {
		s.endDevice(r.Context(), id)
		s.audit(k, tokenbroker.AuditLinkCreate, userID, providerID, err, "device flow: validation failed")
		return err
	}
	if acct != nil {
		l.AccountID, l.AccountLogin = acct.ID, acct.Login
	}
	stored, err := s.store.PutLink(r.Context(), l, tokenbroker.Record{Audit: []tokenbroker.AuditEvent{
		s.event(k, tokenbroker.AuditLinkCreate, userID, providerID, "device flow"),
	}})
	if err != nil {
		s.audit(k, tokenbroker.AuditLinkCreate, userID, providerID, err, "device flow")
		return err
	}
	s.endDevice(r.Context(), id)
	st := linkStatus(stored)
	writeJSON(w, http.StatusOK, apiv1.DeviceStatus{Status: apiv1.DeviceComplete, Link: &st})
	return nil
}

// endDevice deletes a finished device flow so it cannot be polled again.
func (s *Server) endDevice(ctx context.Context, id string) {
	if _, err := s.store.ConsumeAuthRequest(ctx, id); err != nil && !tokenbroker.IsNotFound(err) {
		s.log.WarnContext(ctx, "cannot delete finished device flow", "err", err.Error())
	}
}

// randomID returns 32 random bytes from r in unpadded base64url: the ids of
// connect sessions and device requests, which are secrets in URLs.
func randomID(r io.Reader) (string, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("random id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
