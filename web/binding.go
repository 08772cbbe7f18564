package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"time"
)

// The binding cookie ties a connect session to the browser that opened its
// URL first. Its value is HMAC-SHA256(CookieKey, label || session id):
// only the server can compute it, so knowing the URL (which is the session
// id) is not enough to act as the first browser. Each session has its own
// cookie name, so one browser can hold several sessions at once, and the
// cookie is scoped to the two paths that need it.

const (
	bindingLabel = "tokenbroker/web connect-binding v1\x00"
	csrfLabel    = "tokenbroker/web csrf v1\x00"
	cookiePrefix = "tb_connect_"
)

func (h *Handler) mac(label, sessionID string) string {
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte(label))
	m.Write([]byte(sessionID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// cookieName is the name of sessionID's binding cookie: a short hash of the
// id, never the id itself.
func cookieName(sessionID string) string {
	sum := sha256.Sum256([]byte(sessionID))
	return cookiePrefix + hex.EncodeToString(sum[:8])
}

// sessionTag is a short, non-secret label of a session for logs.
func sessionTag(sessionID string) string {
	sum := sha256.Sum256([]byte(sessionID))
	return hex.EncodeToString(sum[:4])
}

// bound reports whether r carries the binding cookie of sessionID.
func (h *Handler) bound(r *http.Request, sessionID string) bool {
	want := h.mac(bindingLabel, sessionID)
	for _, c := range r.CookiesNamed(cookieName(sessionID)) {
		if hmac.Equal([]byte(c.Value), []byte(want)) {
			return true
		}
	}
	return false
}

// bind sets sessionID's binding cookie on the connect pages and on the
// callback, until expires.
func (h *Handler) bind(w http.ResponseWriter, sessionID string, expires time.Time) {
	value := h.mac(bindingLabel, sessionID)
	maxAge := int(expires.Sub(h.now()).Seconds())
	if maxAge < 60 {
		maxAge = 60
	}
	for _, p := range []string{h.connectPath(sessionID), h.basePath + "/oauth/callback"} {
		http.SetCookie(w, &http.Cookie{
			Name:     cookieName(sessionID),
			Value:    value,
			Path:     p,
			MaxAge:   maxAge,
			HttpOnly: true,
			Secure:   h.secure,
			SameSite: http.SameSiteLaxMode,
		})
	}
}

// csrfToken is the CSRF token of the connect page's forms: derived from the
// binding, so it is only valid together with the binding cookie.
func (h *Handler) csrfToken(sessionID string) string {
	return h.mac(csrfLabel, h.mac(bindingLabel, sessionID))
}

func (h *Handler) csrfValid(sessionID, token string) bool {
	return token != "" && hmac.Equal([]byte(token), []byte(h.csrfToken(sessionID)))
}
