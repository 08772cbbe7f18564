package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apiv1"
)

// Aliases of the RFC 8693 identifiers in package apiv1.
const (
	GrantTypeTokenExchange = apiv1.GrantTypeTokenExchange
	TokenTypeJWT           = apiv1.TokenTypeJWT
	TokenTypeIDToken       = apiv1.TokenTypeIDToken
	TokenTypeAccessToken   = apiv1.TokenTypeAccessToken
)

// oauthError is an [apiv1.OAuthError] with the HTTP status (and
// Retry-After) to send it with.
type oauthError struct {
	body       apiv1.OAuthError
	status     int
	retryAfter int
}

func oauthErr(status int, code, format string, args ...any) *oauthError {
	return &oauthError{status: status, body: apiv1.OAuthError{Error: code, Description: tokenbroker.Truncate(fmt.Sprintf(format, args...), 300)}}
}

// tokenExchange serves POST /oauth2/token: a workload exchanges its signed
// JWT (subject_token) for the access token of a user's link to a provider
// (audience), through the same TokenService as the REST token endpoint.
// The workload's trust entry is the policy: the provider must be among
// its providers, the user among its users (named with the "user"
// parameter when there are several), and it needs tokens:read.
func (s *Server) tokenExchange(w http.ResponseWriter, r *http.Request) {
	if e := s.exchange(w, r); e != nil {
		writeOAuthError(w, e)
	}
}

func (s *Server) exchange(w http.ResponseWriter, r *http.Request) *oauthError {
	form, e := parseTokenForm(w, r)
	if e != nil {
		return e
	}
	if gt := form.Get("grant_type"); gt != GrantTypeTokenExchange {
		if gt == "" {
			return oauthErr(http.StatusBadRequest, "invalid_request", "grant_type is required")
		}
		return oauthErr(http.StatusBadRequest, "unsupported_grant_type", "only %s is supported", GrantTypeTokenExchange)
	}
	raw := form.Get("subject_token")
	if raw == "" {
		return oauthErr(http.StatusBadRequest, "invalid_request", "subject_token is required")
	}
	switch form.Get("subject_token_type") {
	case TokenTypeJWT, TokenTypeIDToken:
	case "":
		return oauthErr(http.StatusBadRequest, "invalid_request", "subject_token_type is required")
	default:
		return oauthErr(http.StatusBadRequest, "invalid_request", "subject_token_type must be %s or %s", TokenTypeJWT, TokenTypeIDToken)
	}
	if rt := form.Get("requested_token_type"); rt != "" && rt != TokenTypeAccessToken {
		return oauthErr(http.StatusBadRequest, "invalid_request", "requested_token_type must be %s", TokenTypeAccessToken)
	}
	if form.Has("actor_token") || form.Has("actor_token_type") {
		return oauthErr(http.StatusBadRequest, "invalid_request", "delegation (actor_token) is not supported")
	}
	if form.Has("resource") {
		return oauthErr(http.StatusBadRequest, "invalid_target", "resource is not supported: name the provider id in audience")
	}
	providerID := form.Get("audience")
	if providerID == "" {
		return oauthErr(http.StatusBadRequest, "invalid_request", "audience is required: the provider id")
	}
	var scopes []string
	if sc := form.Get("scope"); sc != "" {
		scopes = strings.Fields(sc)
	}

	if s.workloads == nil {
		s.authFailed(r, &authFailure{reason: authNoWorkloads})
		return oauthErr(http.StatusBadRequest, "invalid_grant", "this server trusts no workload identity")
	}
	wl, fail := s.verifyWorkload(r.Context(), raw)
	if fail != nil {
		s.authFailed(r, fail)
		return oauthErr(http.StatusBadRequest, "invalid_grant", "%s", fail.msg)
	}
	k := workloadCaller(wl)
	if rec, ok := w.(*recorder); ok {
		rec.workload = wl.TrustID
	}
	if !k.HasScope(tokenbroker.ScopeTokensRead) {
		return oauthErr(http.StatusBadRequest, "unauthorized_client", "trust entry %s does not grant %s", wl.TrustID, tokenbroker.ScopeTokensRead)
	}
	if tokenbroker.ValidateProviderID(providerID) != nil {
		return oauthErr(http.StatusBadRequest, "invalid_target", "audience is not a provider id")
	}
	if _, err := s.providers.Provider(providerID); err != nil {
		return oauthErr(http.StatusBadRequest, "invalid_target", "no provider %q is configured", providerID)
	}
	if !k.AllowsProvider(providerID) {
		return oauthErr(http.StatusBadRequest, "invalid_target", "trust entry %s may not get tokens for provider %s", wl.TrustID, providerID)
	}
	userID := form.Get("user")
	switch {
	case userID == "" && len(wl.Users) == 1:
		userID = wl.Users[0]
	case userID == "":
		return oauthErr(http.StatusBadRequest, "invalid_request", "trust entry %s may act for several users: name one with the user parameter", wl.TrustID)
	case tokenbroker.ValidateUserID(userID) != nil:
		return oauthErr(http.StatusBadRequest, "invalid_request", "user is not a valid user id")
	case !k.AllowsUser(userID):
		return oauthErr(http.StatusBadRequest, "invalid_grant", "the subject token does not allow acting for this user")
	}

	tok, err := s.tokens.Token(r.Context(), providerID, userID, 0)
	if err == nil {
		if missing := slices.DeleteFunc(slices.Clone(scopes), func(sc string) bool { return slices.Contains(tok.Scopes, sc) }); len(missing) > 0 {
			err = tokenbroker.Errorf(codeInvalidScope, "the link's token does not carry scope %s", tokenbroker.Truncate(strings.Join(missing, " "), 100))
		}
	}
	s.audit(k, tokenbroker.AuditTokenRead, userID, providerID, err, "token exchange")
	if err != nil {
		return s.exchangeError(r, providerID, err)
	}
	resp := apiv1.ExchangeToken{
		AccessToken:     tok.AccessToken,
		IssuedTokenType: TokenTypeAccessToken,
		TokenType:       tok.TokenType,
		Scope:           strings.Join(tok.Scopes, " "),
	}
	if resp.TokenType == "" {
		resp.TokenType = "Bearer"
	}
	if !tok.Expiry.IsZero() {
		resp.ExpiresIn = max(int64(tok.Expiry.Sub(s.now())/time.Second), 1)
	}
	w.Header().Set("Pragma", "no-cache") // RFC 6749 §5.1, with writeJSON's no-store
	writeJSON(w, http.StatusOK, &resp)
	return nil
}

// codeInvalidScope is the audit outcome of a scope the link lacks.
const codeInvalidScope = "invalid_scope"

// exchangeError maps the TokenService's errors to RFC 6749 §5.2 errors.
func (s *Server) exchangeError(r *http.Request, providerID string, err error) *oauthError {
	var re *tokenbroker.ReauthRequiredError
	var ue *tokenbroker.ProviderUnavailableError
	switch {
	case tokenbroker.ErrorCode(err) == codeInvalidScope:
		return oauthErr(http.StatusBadRequest, "invalid_scope", "%s", tokenbroker.ErrorMessage(err))
	case tokenbroker.IsNotFound(err):
		return oauthErr(http.StatusBadRequest, "invalid_grant", "the user has no link to %s: the user must connect one", providerID)
	case errors.As(err, &re):
		return oauthErr(http.StatusBadRequest, "invalid_grant", "%s; the user must connect again", re.Error())
	}
	p := s.problemFor(err)
	if p.Status == http.StatusServiceUnavailable {
		e := oauthErr(http.StatusServiceUnavailable, "temporarily_unavailable", "%s", p.Detail)
		e.retryAfter = p.RetryAfter
		if errors.As(err, &ue) && e.retryAfter == 0 {
			e.retryAfter = int(DefaultRetryAfter / time.Second)
		}
		return e
	}
	s.log.LogAttrs(r.Context(), slog.LevelError, "internal error", slog.String("pattern", r.Pattern), slog.String("err", err.Error()))
	return oauthErr(http.StatusInternalServerError, "server_error", "Internal error. The server logged the details.")
}

// parseTokenForm reads the form-encoded body of a token request. A
// parameter sent twice is invalid (RFC 6749 §3.2).
func parseTokenForm(w http.ResponseWriter, r *http.Request) (url.Values, *oauthError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, oauthErr(http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	if err := r.ParseForm(); err != nil {
		return nil, oauthErr(http.StatusBadRequest, "invalid_request", "the body is not a form of at most %d bytes", MaxBodyBytes)
	}
	for name, vs := range r.PostForm {
		if len(vs) > 1 {
			return nil, oauthErr(http.StatusBadRequest, "invalid_request", "parameter %s is repeated", tokenbroker.Truncate(name, 40))
		}
	}
	return r.PostForm, nil
}

// writeOAuthError sends e as RFC 6749 §5.2 JSON, never cached.
func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	h := w.Header()
	h.Set("Pragma", "no-cache")
	if e.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	writeJSON(w, e.status, &e.body)
}
