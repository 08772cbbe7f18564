package fakeidp

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// authCode is an issued authorization code (RFC 6749 §4.1.2).
type authCode struct {
	clientID      string
	redirectURI   string
	redirectGiven bool // redirect_uri was in the request, so the token request must repeat it
	challenge     string
	scope         string
	nonce         string
	userID        string
	expiry        time.Time
	used          bool
	fam           *family // what the code granted, revoked if it is replayed
}

// authRequest is a validated authorization request (RFC 6749 §4.1.1).
type authRequest struct {
	clientID      string
	redirectURI   string // effective redirect URI
	redirectGiven bool
	scope         string
	state         string
	challenge     string
	method        string
	nonce         string
}

// hidden returns the request's parameters for the login form.
func (a *authRequest) hidden() []hiddenField {
	f := []hiddenField{{"response_type", "code"}, {"client_id", a.clientID}}
	if a.redirectGiven {
		f = append(f, hiddenField{"redirect_uri", a.redirectURI})
	}
	for _, p := range []hiddenField{{"scope", a.scope}, {"state", a.state},
		{"code_challenge", a.challenge}, {"code_challenge_method", a.method}, {"nonce", a.nonce}} {
		if p.Value != "" {
			f = append(f, p)
		}
	}
	return f
}

// parseAuthRequest validates an authorization request. A problem with the
// client or the redirect URI is fatal: it is shown to the user and never
// redirected (RFC 6749 §4.1.2.1). Other problems are redirected to the
// client as an oauthError.
func (s *Server) parseAuthRequest(v url.Values) (req *authRequest, fatal string, e *oauthError) {
	for k, vals := range v {
		if len(vals) > 1 {
			return nil, "Parameter " + k + " is repeated.", nil
		}
	}
	req = &authRequest{
		clientID:    v.Get("client_id"),
		redirectURI: v.Get("redirect_uri"),
		scope:       joinScopes([]string{v.Get("scope")}),
		state:       v.Get("state"),
		challenge:   v.Get("code_challenge"),
		method:      v.Get("code_challenge_method"),
		nonce:       v.Get("nonce"),
	}
	req.redirectGiven = req.redirectURI != ""
	switch {
	case req.clientID == "":
		return nil, "The request has no client_id.", nil
	case req.clientID != s.cfg.ClientID:
		return nil, "The client is unknown.", nil
	}
	switch {
	case len(s.cfg.RedirectURIs) == 0 && !req.redirectGiven:
		return nil, "The request has no redirect_uri.", nil
	case len(s.cfg.RedirectURIs) == 0 && !isLoopbackRedirect(req.redirectURI):
		return nil, "The redirect_uri is not a loopback URI, and none is registered.", nil
	case !req.redirectGiven && len(s.cfg.RedirectURIs) > 1:
		return nil, "The request has no redirect_uri and the client has several.", nil
	case !req.redirectGiven:
		req.redirectURI = s.cfg.RedirectURIs[0]
	case len(s.cfg.RedirectURIs) > 0 && !slices.Contains(s.cfg.RedirectURIs, req.redirectURI):
		// RFC 9700 §4.1.3: exact string matching.
		return nil, "The redirect_uri does not match a registered redirect URI.", nil
	}
	switch {
	case v.Get("response_type") == "":
		return req, "", errInvalidRequest("response_type is missing.")
	case v.Get("response_type") != "code":
		return req, "", &oauthError{code: "unsupported_response_type", desc: "Only response_type=code is supported."}
	case len(req.state) < s.cfg.MinStateLength:
		return req, "", &oauthError{code: "invalid_state",
			desc: fmt.Sprintf("The state is shorter than %d characters.", s.cfg.MinStateLength)}
	case req.challenge == "" && s.cfg.RequirePKCE:
		return req, "", errInvalidRequest("PKCE is required: send code_challenge with code_challenge_method=S256.")
	case req.challenge == "" && req.method != "":
		return req, "", errInvalidRequest("code_challenge_method without code_challenge.")
	case req.challenge != "" && req.method != "S256":
		// RFC 7636 §4.3: the default method is plain, which is not supported.
		return req, "", errInvalidRequest("Only code_challenge_method=S256 is supported.")
	case req.challenge != "" && (len(req.challenge) != 43 || strings.Trim(req.challenge,
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != ""):
		return req, "", errInvalidRequest("code_challenge is not a base64url SHA-256 hash.")
	}
	return req, "", nil
}

// isLoopbackRedirect reports whether raw is an http(s) URI on a loopback
// host without fragment (RFC 8252 §7.3).
func isLoopbackRedirect(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Fragment != "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// authRequest parses the authorization request in v. When it is not
// valid, it answers (an error page when the client cannot be trusted with
// a redirect, else a redirect with the error) and reports false.
func (s *Server) authRequest(w http.ResponseWriter, r *http.Request, v url.Values) (*authRequest, bool) {
	req, fatal, e := s.parseAuthRequest(v)
	switch {
	case fatal != "":
		s.renderError(w, http.StatusBadRequest, fatal)
		return nil, false
	case e != nil:
		s.redirectError(w, r, req, e)
		return nil, false
	}
	return req, true
}

// formUser is the user the login or device form chose: the username
// typed, else the one picked from the list; "" when neither.
func formUser(form url.Values) string {
	if name := strings.TrimSpace(form.Get("username")); name != "" {
		return name
	}
	return form.Get("login")
}

// handleAuthorize shows the login page, or approves at once in
// auto-approve mode (RFC 6749 §4.1.1).
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	req, ok := s.authRequest(w, r, r.URL.Query())
	if !ok {
		return
	}
	switch {
	case s.cfg.AutoApprove != "":
		s.mu.Lock()
		u, _ := s.userLocked(s.cfg.AutoApprove)
		s.mu.Unlock()
		s.approve(w, r, req, u)
	case s.loginURL != "":
		// Config.SeparateLoginOrigin: the login page is elsewhere, as an
		// identity provider's login app often is.
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, s.loginURL+"/login?"+r.URL.RawQuery, http.StatusFound)
	default:
		s.renderLogin(w, r, http.StatusOK, req, "")
	}
}

// handleSeparateLogin serves GET /login on the second origin of
// Config.SeparateLoginOrigin: the login page of the authorization request
// in its query, whose form posts to /authorize on the server's own origin.
func (s *Server) handleSeparateLogin(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/login" || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	if req, ok := s.authRequest(w, r, r.URL.Query()); ok {
		s.renderLogin(w, r, http.StatusOK, req, "")
	}
}

// handleAuthorizeDecision takes the login form: approve as the chosen
// user, or deny.
func (s *Server) handleAuthorizeDecision(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.renderError(w, http.StatusBadRequest, "The form could not be read.")
		return
	}
	form := url.Values{}
	for k, v := range r.PostForm {
		if k != "login" && k != "username" && k != "action" {
			form[k] = v
		}
	}
	req, ok := s.authRequest(w, r, form)
	if !ok {
		return
	}
	if r.PostForm.Get("action") == "deny" {
		s.redirectError(w, r, req, &oauthError{code: "access_denied", desc: "The user denied the request."})
		return
	}
	name := formUser(r.PostForm)
	if name == "" {
		s.renderLogin(w, r, http.StatusBadRequest, req, "Pick a user or type a username.")
		return
	}
	s.mu.Lock()
	u := s.userOrCreateLocked(name)
	s.mu.Unlock()
	s.approve(w, r, req, u)
}

// approve issues a code for u and redirects back to the client.
func (s *Server) approve(w http.ResponseWriter, r *http.Request, req *authRequest, u User) {
	value, err := s.newSecret(PrefixCode)
	if err != nil {
		s.log.Error("fakeidp: internal error", "err", err)
		s.renderError(w, http.StatusInternalServerError, "Internal error.")
		return
	}
	s.mu.Lock()
	s.codes[value] = &authCode{
		clientID:      req.clientID,
		redirectURI:   req.redirectURI,
		redirectGiven: req.redirectGiven,
		challenge:     req.challenge,
		scope:         req.scope,
		nonce:         req.nonce,
		userID:        u.ID,
		expiry:        s.now().Add(s.cfg.CodeTTL),
	}
	s.stats.Authorizations++
	s.mu.Unlock()
	q := url.Values{"code": {value}}
	s.redirect(w, r, req, q)
}

// redirectError sends an authorization error to the client's redirect URI
// (RFC 6749 §4.1.2.1).
func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, req *authRequest, e *oauthError) {
	s.redirect(w, r, req, url.Values{"error": {e.code}, "error_description": {e.desc}})
}

// redirect sends the user agent to the redirect URI with q, the state and,
// in OIDC mode, the issuer (RFC 9207).
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, req *authRequest, q url.Values) {
	u, err := url.Parse(req.redirectURI)
	if err != nil { // checked by parseAuthRequest; registered URIs by Config
		s.renderError(w, http.StatusBadRequest, "The redirect_uri is invalid.")
		return
	}
	if req.state != "" {
		q.Set("state", req.state)
	}
	if s.oidc != nil && !s.cfg.NoIssParameter {
		q.Set("iss", s.base(r))
	}
	old := u.Query()
	for k, v := range q {
		old[k] = v
	}
	u.RawQuery = old.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusFound)
}
