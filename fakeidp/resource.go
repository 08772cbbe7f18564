package fakeidp

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// bearerToken returns the token of an "Authorization: Bearer x" header
// (RFC 6750 §2.1), also accepting GitHub's "token x".
func bearerToken(r *http.Request) string {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || (!strings.EqualFold(scheme, "bearer") && !strings.EqualFold(scheme, "token")) {
		return ""
	}
	return strings.TrimSpace(tok)
}

// handleUserinfo answers who an access token belongs to: the OIDC
// userinfo endpoint (OpenID Connect Core §5.3), also served at GitHub's
// /user path. Expired, revoked or unknown tokens get 401 with an
// invalid_token challenge (RFC 6750 §3.1).
func (s *Server) handleUserinfo(w http.ResponseWriter, r *http.Request) {
	if s.applyPreFault(w, r, epUserinfo, "") {
		return
	}
	tok := bearerToken(r)
	if tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="fakeidp"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{
			"error": "invalid_request", "error_description": "A bearer access token is required."})
		return
	}
	s.mu.Lock()
	a := s.access[tok]
	ok := a != nil && a.validLocked(s.now())
	var u User
	var scope string
	if ok {
		u, _ = s.userLocked(a.fam.userID)
		scope = a.fam.scope
	}
	s.mu.Unlock()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="fakeidp", error="invalid_token", error_description="The access token is invalid, expired or revoked."`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{
			"error": "invalid_token", "error_description": "The access token is invalid, expired or revoked."})
		return
	}
	if s.cfg.MinimalUserinfo {
		writeJSON(w, http.StatusOK, map[string]any{"sub": u.ID, "preferred_username": u.Login, "email": u.Email})
		return
	}
	var id any = u.ID
	if s.cfg.Flavor == FlavorGitHub {
		// GitHub's user ids are numbers.
		if n, err := strconv.ParseInt(u.ID, 10, 64); err == nil {
			id = n
		}
		w.Header().Set("X-OAuth-Scopes", strings.Join(splitScope(scope), ", "))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"sub":                u.ID,
		"id":                 id,
		"login":              u.Login,
		"preferred_username": u.Login,
		"username":           u.Login,
		"email":              u.Email,
		"email_verified":     u.Email != "",
		"name":               u.Name,
	})
}

// handleRevoke is the token revocation endpoint (RFC 7009). Revoking a
// refresh token revokes its whole family (RFC 7009 §2.1 allows it, and
// it is what providers do); revoking an access token revokes just it.
// Unknown tokens are answered 200, as §2.2 requires.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	if e := parsePostForm(w, r); e != nil {
		s.writeRevokeError(w, e)
		return
	}
	if s.applyPreFault(w, r, epRevoke, "") {
		return
	}
	if e := s.authenticateClient(r, false); e != nil {
		s.writeRevokeError(w, e)
		return
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		s.writeRevokeError(w, errInvalidRequest("token is missing."))
		return
	}
	// One client is registered, so every known token is the caller's.
	s.mu.Lock()
	s.stats.Revocations++
	if rt := s.refresh[tok]; rt != nil {
		s.revokeFamilyLocked(rt.fam, "revocation")
	} else if a := s.access[tok]; a != nil {
		if s.cfg.RevokeGrantWithAccessToken {
			s.revokeFamilyLocked(a.fam, "revocation")
		} else {
			a.revoked = true
		}
	}
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// writeRevokeError answers a revocation error; the revocation endpoint
// follows RFC 7009 in every flavour.
func (s *Server) writeRevokeError(w http.ResponseWriter, e *oauthError) {
	if e.basic && e.status == http.StatusUnauthorized && !s.cfg.NoBasicChallenge {
		w.Header().Set("WWW-Authenticate", `Basic realm="fakeidp"`)
	}
	writeJSON(w, e.status, map[string]string{"error": e.code, "error_description": s.describe(e)})
}

// handleGitHubRevokeGrant is GitHub's "delete an app authorization"
// (DELETE /applications/{client_id}/grant with the client's Basic
// credentials and {"access_token": ...}): it revokes the token's whole
// family and answers 204, or 404 for an unknown token or bad credentials,
// as GitHub does.
func (s *Server) handleGitHubRevokeGrant(w http.ResponseWriter, r *http.Request) {
	if s.applyPreFault(w, r, epRevoke, "") {
		return
	}
	notFound := func() {
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
	}
	id, secret, ok := r.BasicAuth()
	if !ok || id != s.cfg.ClientID || r.PathValue("client_id") != id ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(s.cfg.ClientSecret)) != 1 {
		notFound()
		return
	}
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFormBytes)).Decode(&body); err != nil || body.AccessToken == "" {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"message": "Invalid request: access_token is required."})
		return
	}
	s.mu.Lock()
	s.stats.Revocations++
	a := s.access[body.AccessToken]
	if a != nil {
		s.revokeFamilyLocked(a.fam, "revocation")
	}
	s.mu.Unlock()
	if a == nil {
		notFound()
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
