package web

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// The binding cookie ties a connect session to the browser that opened its
// URL first. Its value is the session id sealed with AES-256-GCM under a
// key derived from CookieKey: only the server can make it, so knowing the
// URL (which is the session id) is not enough to act as the first browser,
// and the cookie does not show the id to whatever logs cookies. The
// callback learns its session from it: the store keeps only the hash of
// the session id with the state. Each session has its own
// cookie name, so one browser can hold several sessions at once, and the
// cookie is scoped to the two paths that need it.

const (
	bindingLabel = "tokenbroker/web connect-binding v1\x00"
	sealLabel    = "tokenbroker/web connect-binding seal v2\x00"
	csrfLabel    = "tokenbroker/web csrf v1\x00"
	cookiePrefix = "tb_connect_"
)

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
	for _, c := range r.CookiesNamed(cookieName(sessionID)) {
		if id, ok := h.openBinding(c.Value); ok && hmac.Equal([]byte(id), []byte(sessionID)) {
			return true
		}
	}
	return false
}

// boundSession returns the id of the connect session whose hash
// ([tokenbroker.HashID]) is sessionHash, from the binding cookie r
// carries for it, or false when this browser holds none.
func (h *Handler) boundSession(r *http.Request, sessionHash string) (string, bool) {
	// cookieName(id) is the prefix and the head of the id's hash.
	for _, c := range r.CookiesNamed(cookiePrefix + sessionHash[:16]) {
		if id, ok := h.openBinding(c.Value); ok && tokenbroker.HashID(id) == sessionHash {
			return id, true
		}
	}
	return "", false
}

// bindingAEAD is AES-256-GCM under a key derived from CookieKey.
func (h *Handler) bindingAEAD() cipher.AEAD {
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte(sealLabel))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		panic("web: " + err.Error()) // a 32-byte key always makes a cipher
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic("web: " + err.Error())
	}
	return aead
}

// sealBinding returns the binding cookie's value for sessionID.
func (h *Handler) sealBinding(sessionID string) (string, error) {
	aead := h.bindingAEAD()
	nonce := make([]byte, aead.NonceSize())
	if err := h.readRand(nonce); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, []byte(sessionID), []byte(bindingLabel))), nil
}

// openBinding returns the session id sealed in a binding cookie's value.
func (h *Handler) openBinding(value string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(value)
	aead := h.bindingAEAD()
	if err != nil || len(b) < aead.NonceSize() {
		return "", false
	}
	id, err := aead.Open(nil, b[:aead.NonceSize()], b[aead.NonceSize():], []byte(bindingLabel))
	if err != nil {
		return "", false
	}
	return string(id), true
}

// bind sets sessionID's binding cookie on the connect pages and on the
// callback, until expires.
func (h *Handler) bind(w http.ResponseWriter, sessionID string, expires time.Time) error {
	value, err := h.sealBinding(sessionID)
	if err != nil {
		return err
	}
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
	return nil
}

// csrfToken is the CSRF token of the connect page's forms: derived from the
// binding, so it is only valid together with the binding cookie.
func (h *Handler) csrfToken(sessionID string) string {
	return h.mac(csrfLabel, h.mac(bindingLabel, sessionID))
}

func (h *Handler) csrfValid(sessionID, token string) bool {
	return token != "" && hmac.Equal([]byte(token), []byte(h.csrfToken(sessionID)))
}
