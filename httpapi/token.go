package httpapi

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apiv1"
)

// MaxMinValid bounds the min_valid parameter of the token endpoint.
const MaxMinValid = 24 * time.Hour

// getToken is the hot path: authenticate (cached), authorize, one call to
// the TokenService, one non-blocking audit record, no store write.
func (s *Server) getToken(w http.ResponseWriter, r *http.Request, k *caller) error {
	userID, providerID, err := pathIDs(r)
	if err != nil {
		return err
	}
	if err := authorize(k, tokenbroker.ScopeTokensRead, userID, providerID); err != nil {
		return err
	}
	minValid, err := parseMinValid(r)
	if err != nil {
		return err
	}
	tok, err := s.tokens.Token(r.Context(), providerID, userID, minValid)
	s.audit(k, tokenbroker.AuditTokenRead, userID, providerID, err, "")
	if err != nil {
		if tokenbroker.IsNotFound(err) {
			return s.notFoundDetail(providerID)
		}
		return s.withConnectURL(r, k, userID, providerID, err)
	}
	resp := apiv1.Token{
		AccessToken: tok.AccessToken,
		TokenType:   tok.TokenType,
		Expiry:      tok.Expiry.UTC(),
		Scopes:      tok.Scopes,
		Extra:       tok.Extra,
	}
	if resp.TokenType == "" {
		resp.TokenType = "Bearer"
	}
	w.Header().Set("Pragma", "no-cache") // RFC 6749 §5.1, with writeJSON's no-store
	writeJSON(w, http.StatusOK, &resp)
	return nil
}

// notFoundDetail says which of link or provider is missing, and how to
// make the link.
func (s *Server) notFoundDetail(providerID string) error {
	if _, err := s.providers.Provider(providerID); err != nil {
		return tokenbroker.Errorf(tokenbroker.ENOTFOUND, "no provider %q is configured", providerID)
	}
	return tokenbroker.Errorf(tokenbroker.ENOTFOUND, "the user has no link to %s: connect one through a connect session (POST /api/v1/connect-sessions) or the device flow", providerID)
}

// parseMinValid reads min_valid: a Go duration ("90s", "5m") or a number
// of seconds, from 0 to [MaxMinValid].
func parseMinValid(r *http.Request) (time.Duration, error) {
	v := r.URL.Query().Get("min_valid")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.ParseInt(v, 10, 64)
		if nerr != nil || n < 0 || n > int64(MaxMinValid/time.Second) {
			return 0, tokenbroker.Errorf(tokenbroker.EINVALID, "min_valid: want a duration such as 300s or 5m, or a number of seconds, up to 24h")
		}
		d = time.Duration(n) * time.Second
	}
	if d < 0 || d > MaxMinValid {
		return 0, tokenbroker.Errorf(tokenbroker.EINVALID, "min_valid: want a duration from 0 to 24h")
	}
	return d, nil
}

// withConnectURL gives a reauth_required error the URL to send the user
// to: a connect session for the user and provider (the same one again
// while it is open and unused, see reauthSession), when the caller may
// create one (links:write for them). Otherwise the problem's detail says
// how to get one.
func (s *Server) withConnectURL(r *http.Request, k *caller, userID, providerID string, err error) error {
	var re *tokenbroker.ReauthRequiredError
	if !errors.As(err, &re) || re.ConnectURL != "" {
		return err
	}
	if authorize(k, tokenbroker.ScopeLinksWrite, userID, providerID) != nil {
		return err
	}
	sess, cerr := s.reauthSession(r.Context(), k, userID, providerID)
	if cerr != nil {
		s.log.WarnContext(r.Context(), "cannot create connect session for reauth_required", "err", cerr.Error())
		return err
	}
	out := *re
	out.ConnectURL = s.connectURL(sess.ID)
	return &out
}
