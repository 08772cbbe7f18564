package fakeidp

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Grant types of the token endpoint.
const (
	grantCode    = "authorization_code"
	grantRefresh = "refresh_token"
	grantDevice  = "urn:ietf:params:oauth:grant-type:device_code"
)

// oauthError is an error answer of the token, device or revocation
// endpoints (RFC 6749 §5.2, RFC 8628 §3.5).
type oauthError struct {
	status int    // standard flavour status
	code   string // RFC error code
	github string // GitHub flavour code; "" means code
	desc   string // safe description, never a secret
	basic  bool   // invalid_client after an HTTP Basic attempt: add WWW-Authenticate
}

func errInvalidRequest(desc string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: "invalid_request", desc: desc}
}

// maxFormBytes bounds request bodies.
const maxFormBytes = 64 << 10

// parsePostForm parses an application/x-www-form-urlencoded body.
func parsePostForm(w http.ResponseWriter, r *http.Request) *oauthError {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/x-www-form-urlencoded" {
		return errInvalidRequest("The request body must be application/x-www-form-urlencoded.")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return errInvalidRequest("The request body is not a valid form.")
	}
	for k, v := range r.PostForm {
		if len(v) > 1 {
			// RFC 6749 §3.2: parameters must not be included more than once.
			return errInvalidRequest(fmt.Sprintf("Parameter %q is repeated.", k))
		}
	}
	return nil
}

// authenticateClient checks the client credentials of r (RFC 6749
// §2.3.1) against the accepted methods. With optional set (the device
// authorization endpoint), a request with only a matching client_id is
// accepted, as RFC 8628 §3.1 allows.
func (s *Server) authenticateClient(r *http.Request, optional bool) *oauthError {
	basicID, basicSecret, hasBasic := r.BasicAuth()
	formID, formSecret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	_, hasFormSecret := r.PostForm["client_secret"]
	bad := func(desc string) *oauthError {
		return &oauthError{status: http.StatusUnauthorized, code: "invalid_client",
			github: "incorrect_client_credentials", desc: desc, basic: hasBasic}
	}
	if hasBasic {
		// RFC 6749 §2.3.1: the Basic credentials are form-urlencoded first.
		var err1, err2 error
		basicID, err1 = url.QueryUnescape(basicID)
		basicSecret, err2 = url.QueryUnescape(basicSecret)
		if err1 != nil || err2 != nil {
			return bad("The Basic credentials are not form-urlencoded.")
		}
	}
	switch {
	case hasBasic && hasFormSecret:
		return errInvalidRequest("The client authenticated with more than one method.")
	case hasBasic && s.cfg.ClientAuth == ClientAuthForm:
		return bad("HTTP Basic client authentication is not accepted; send client_secret in the form.")
	case hasFormSecret && s.cfg.ClientAuth == ClientAuthBasic:
		return bad("Client credentials in the form are not accepted; use HTTP Basic.")
	}
	id, secret, hasSecret := formID, formSecret, hasFormSecret
	if hasBasic {
		if formID != "" && formID != basicID {
			return bad("client_id does not match the authenticated client.")
		}
		id, secret, hasSecret = basicID, basicSecret, true
	}
	if id == "" {
		return bad("The client is not identified.")
	}
	if id != s.cfg.ClientID {
		return bad("The client is unknown.")
	}
	if s.cfg.PublicClient && secret == "" {
		return nil
	}
	if !hasSecret {
		if optional {
			return nil
		}
		return bad("The client did not authenticate.")
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(s.cfg.ClientSecret)) != 1 {
		return bad("The client secret is wrong.")
	}
	return nil
}

// handleToken is the token endpoint (RFC 6749 §3.2).
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if e := parsePostForm(w, r); e != nil {
		s.writeOAuthError(w, r, e)
		return
	}
	grant := r.PostForm.Get("grant_type")
	arrival, _ := r.Context().Value(arrivalKey{}).(int64)
	s.mu.Lock()
	switch grant {
	case grantRefresh:
		s.stats.RefreshCalls++
		if rt := s.refresh[r.PostForm.Get("refresh_token")]; rt != nil {
			rt.fam.refreshCalls++
		}
	case grantDevice:
		s.stats.DevicePolls++
	}
	switch grant {
	case grantCode, grantRefresh, grantDevice:
		s.stats.TokenRequests[grant]++
	default: // bounded: clients choose the string
		s.stats.TokenRequests["other"]++
	}
	s.mu.Unlock()
	if s.applyPreFault(w, r, epToken, grant) {
		return
	}
	if e := s.authenticateClient(r, false); e != nil {
		s.writeOAuthError(w, r, e)
		return
	}
	switch grant {
	case grantCode:
		s.tokenByCode(w, r)
	case grantRefresh:
		s.tokenByRefresh(w, r, arrival)
	case grantDevice:
		s.tokenByDevice(w, r)
	case "":
		s.writeOAuthError(w, r, errInvalidRequest("grant_type is missing."))
	default:
		s.writeOAuthError(w, r, &oauthError{status: http.StatusBadRequest, code: "unsupported_grant_type",
			desc: "The grant type is not supported."})
	}
}

// tokenByRefresh redeems a refresh token (RFC 6749 §6) with rotation and
// reuse detection (RFC 9700 §4.14.2), and applies the consume-then-fail
// faults after the rotation.
func (s *Server) tokenByRefresh(w http.ResponseWriter, r *http.Request, arrival int64) {
	value := r.PostForm.Get("refresh_token")
	if value == "" {
		s.writeOAuthError(w, r, errInvalidRequest("refresh_token is missing."))
		return
	}
	s.mu.Lock()
	tok, outcome, desc, err := s.useRefreshLocked(value, s.cfg.ClientID, r.PostForm.Get("scope"), arrival)
	post := noPostFault
	var user User
	if err == nil && tok != nil {
		user, _ = s.userLocked(tok.UserID)
	}
	switch {
	case err != nil:
	case outcome == refreshInvalid || outcome == refreshReused:
		s.stats.RefreshFailures++
	case outcome == refreshRotated:
		post = s.faults.decidePost(s.drawLocked)
		switch post {
		case consumeThenFail:
			s.stats.ConsumedThenFailed++
		case consumeThenDrop:
			s.stats.ConsumedThenDropped++
		default:
			s.stats.RefreshSuccesses++
		}
	}
	s.mu.Unlock()
	switch {
	case err != nil:
		s.writeServerError(w, r, err)
		return
	case outcome == refreshInvalid || outcome == refreshReused:
		s.writeOAuthError(w, r, &oauthError{status: http.StatusBadRequest, code: "invalid_grant",
			github: "bad_refresh_token", desc: desc})
		return
	case outcome == refreshOverlapped && tok == nil:
		writeJSON(w, http.StatusInternalServerError, map[string]string{
			"error": "server_error", "error_description": "A concurrent refresh used the refresh token."})
		return
	}
	switch post {
	case consumeThenFail:
		writeJSON(w, http.StatusInternalServerError, map[string]string{
			"error": "server_error", "error_description": "Injected failure after the refresh token was rotated."})
		return
	case consumeThenDrop:
		dropConnection(w)
		return
	}
	s.writeTokenResponse(w, r, tok, user, "")
}

// dropConnection closes the client connection without an answer.
func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		abort()
	}
	conn.Close()
}

// tokenByCode redeems an authorization code (RFC 6749 §4.1.3) with PKCE
// verification (RFC 7636 §4.6).
func (s *Server) tokenByCode(w http.ResponseWriter, r *http.Request) {
	value := r.PostForm.Get("code")
	if value == "" {
		s.writeOAuthError(w, r, errInvalidRequest("code is missing."))
		return
	}
	verifier := r.PostForm.Get("code_verifier")
	redirectURI := r.PostForm.Get("redirect_uri")
	bad := func(desc string) *oauthError {
		return &oauthError{status: http.StatusBadRequest, code: "invalid_grant", github: "bad_verification_code", desc: desc}
	}
	s.mu.Lock()
	now := s.now()
	c := s.codes[value]
	var e *oauthError
	switch {
	case c == nil:
		e = bad("The authorization code is unknown.")
	case c.used:
		// RFC 6749 §4.1.2: a code used twice revokes what it granted.
		if c.fam != nil {
			s.revokeFamilyLocked(c.fam, "code_replay")
		}
		e = bad("The authorization code has already been used; its tokens are revoked.")
	case !now.Before(c.expiry):
		e = bad("The authorization code has expired.")
	case c.clientID != s.cfg.ClientID:
		e = bad("The authorization code was issued to another client.")
	case c.redirectGiven && redirectURI != c.redirectURI:
		e = &oauthError{status: http.StatusBadRequest, code: "invalid_grant", github: "redirect_uri_mismatch",
			desc: "redirect_uri does not match the authorization request."}
	case c.challenge == "" && verifier != "":
		// RFC 9700 §2.1.1: a code_verifier without a code_challenge is rejected.
		e = bad("code_verifier sent but the authorization request had no code_challenge.")
	case c.challenge != "" && verifier == "":
		e = bad("code_verifier is missing.")
	case c.challenge != "" && !validVerifier(verifier):
		e = bad("code_verifier is malformed (RFC 7636 §4.1).")
	case c.challenge != "" && s256(verifier) != c.challenge:
		e = bad("code_verifier does not match the code_challenge.")
	}
	if e != nil {
		s.mu.Unlock()
		s.writeOAuthError(w, r, e)
		return
	}
	c.used = true
	tok, err := s.newFamilyLocked(c.userID, c.scope, c.nonce)
	if err == nil {
		c.fam = s.fams[tok.Family]
		s.stats.CodeExchanges++
	}
	user, _ := s.userLocked(c.userID)
	s.mu.Unlock()
	if err != nil {
		s.writeServerError(w, r, err)
		return
	}
	s.writeTokenResponse(w, r, tok, user, c.nonce)
}

// s256 is the PKCE S256 transform (RFC 7636 §4.2).
func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// validVerifier checks RFC 7636 §4.1: 43 to 128 unreserved characters.
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for _, c := range v {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.ContainsRune("-._~", c)) {
			return false
		}
	}
	return true
}

// tokenResponse is a successful token answer (RFC 6749 §5.1).
type tokenResponse struct {
	AccessToken           string `json:"access_token"`
	TokenType             string `json:"token_type"`
	ExpiresIn             int64  `json:"expires_in"`
	RefreshToken          string `json:"refresh_token,omitempty"`
	RefreshTokenExpiresIn int64  `json:"refresh_token_expires_in,omitempty"`
	Scope                 string `json:"scope,omitempty"`
	IDToken               string `json:"id_token,omitempty"`
}

// writeTokenResponse answers with tok, adding a signed id_token in OIDC
// mode when the grant's scope has "openid".
func (s *Server) writeTokenResponse(w http.ResponseWriter, r *http.Request, tok *Token, user User, nonce string) {
	resp := tokenResponse{
		AccessToken:  tok.AccessToken,
		TokenType:    tok.TokenType,
		ExpiresIn:    tok.ExpiresIn,
		RefreshToken: tok.RefreshToken,
		Scope:        tok.Scope,
	}
	if s.cfg.RefreshTokenTTL > 0 {
		resp.RefreshTokenExpiresIn = int64(s.cfg.RefreshTokenTTL / time.Second)
	}
	if s.oidc != nil && hasScope(tok.Scope, "openid") {
		id, err := s.idToken(s.base(r), user, tok, nonce, s.now())
		if err != nil {
			s.writeServerError(w, r, err)
			return
		}
		resp.IDToken = id
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if s.cfg.Flavor == FlavorGitHub {
		if !acceptsJSON(r) {
			v := url.Values{"access_token": {resp.AccessToken}, "token_type": {resp.TokenType},
				"expires_in": {fmt.Sprint(resp.ExpiresIn)}, "scope": {resp.Scope}}
			if resp.RefreshToken != "" {
				v.Set("refresh_token", resp.RefreshToken)
			}
			if resp.RefreshTokenExpiresIn > 0 {
				v.Set("refresh_token_expires_in", fmt.Sprint(resp.RefreshTokenExpiresIn))
			}
			if resp.IDToken != "" {
				v.Set("id_token", resp.IDToken)
			}
			writeForm(w, http.StatusOK, v)
			return
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// writeOAuthError answers with e in the server's flavour.
func (s *Server) writeOAuthError(w http.ResponseWriter, r *http.Request, e *oauthError) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	desc := s.describe(e)
	if s.cfg.Flavor == FlavorGitHub {
		code := e.code
		if e.github != "" {
			code = e.github
		}
		if acceptsJSON(r) {
			writeJSON(w, http.StatusOK, map[string]string{"error": code, "error_description": desc})
		} else {
			writeForm(w, http.StatusOK, url.Values{"error": {code}, "error_description": {desc}})
		}
		return
	}
	if e.basic && e.status == http.StatusUnauthorized && !s.cfg.NoBasicChallenge {
		// RFC 6749 §5.2: answer a failed Basic attempt with its challenge.
		h.Set("WWW-Authenticate", `Basic realm="fakeidp"`)
	}
	writeJSON(w, e.status, map[string]string{"error": e.code, "error_description": desc})
}

// rfcDescriptions are RFC 6749 §5.2's descriptions of its error codes.
var rfcDescriptions = map[string]string{
	"invalid_request":        "The request is missing a required parameter, includes an unsupported parameter value (other than grant type), repeats a parameter, includes multiple credentials, utilizes more than one mechanism for authenticating the client, or is otherwise malformed.",
	"invalid_client":         "Client authentication failed (e.g., unknown client, no client authentication included, or unsupported authentication method).",
	"invalid_grant":          "The provided authorization grant (e.g., authorization code, resource owner credentials) or refresh token is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client.",
	"unauthorized_client":    "The authenticated client is not authorized to use this authorization grant type.",
	"unsupported_grant_type": "The authorization grant type is not supported by the authorization server.",
	"invalid_scope":          "The requested scope is invalid, unknown, malformed, or exceeds the scope granted by the resource owner.",
}

// describe is e's error_description: with Config.VerboseErrors, RFC 6749's
// description of the code comes first.
func (s *Server) describe(e *oauthError) string {
	if d := rfcDescriptions[e.code]; s.cfg.VerboseErrors && d != "" {
		return d + " " + e.desc
	}
	return e.desc
}

// writeServerError answers 500 server_error for an internal failure,
// logging the cause (which never holds a secret).
func (s *Server) writeServerError(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("fakeidp: internal error", "path", r.URL.Path, "err", err)
	writeJSON(w, http.StatusInternalServerError, map[string]string{
		"error": "server_error", "error_description": "Internal error."})
}

// acceptsJSON reports whether the request's Accept header names JSON.
func acceptsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "json")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, "encoding failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeForm(w http.ResponseWriter, status int, v url.Values) {
	w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, v.Encode())
}

// splitScope splits a space-separated scope (RFC 6749 §3.3).
func splitScope(scope string) []string { return strings.Fields(scope) }

// joinScopes joins scopes, dropping empty and duplicate ones.
func joinScopes(scopes []string) string {
	var out []string
	seen := map[string]bool{}
	for _, s := range scopes {
		for _, f := range strings.Fields(s) {
			if !seen[f] {
				seen[f] = true
				out = append(out, f)
			}
		}
	}
	return strings.Join(out, " ")
}
