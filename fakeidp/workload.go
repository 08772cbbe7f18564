package fakeidp

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// WorkloadClaims describe a workload identity JWT to mint: what a CI
// system, Kubernetes or SPIRE would issue to a job or pod. The issuer is
// the server's URL (its OIDC issuer), the signature RS256 with the key its
// JWKS publishes.
type WorkloadClaims struct {
	Subject  string   `json:"sub"`
	Audience []string `json:"aud"`
	// TTL is the lifetime from IssuedAt; default 10 minutes.
	TTL time.Duration `json:"-"`
	// IssuedAt defaults to the server's clock; nbf is set to it too.
	IssuedAt time.Time `json:"-"`
	// ID is the jti claim; empty: none.
	ID string `json:"jti,omitempty"`
	// Extra are further claims (repository_owner, actor, ...).
	Extra map[string]any `json:"-"`
}

// DefaultWorkloadTTL is the lifetime of a minted workload JWT.
const DefaultWorkloadTTL = 10 * time.Minute

// MintWorkloadJWT signs a workload JWT for c. It needs [Config.OIDC]. The
// JWT verifies against the discovery document's jwks_uri; tokenbroker's
// workload_identities trust entries accept it with issuer [Server.URL].
func (s *Server) MintWorkloadJWT(c WorkloadClaims) (string, error) {
	if s.oidc == nil {
		return "", errors.New("fakeidp: minting workload JWTs needs OIDC on")
	}
	if c.Subject == "" || len(c.Audience) == 0 {
		return "", errors.New("fakeidp: a workload JWT needs a subject and an audience")
	}
	iat := c.IssuedAt
	if iat.IsZero() {
		iat = s.now()
	}
	ttl := c.TTL
	if ttl <= 0 {
		ttl = DefaultWorkloadTTL
	}
	std := jwt.Claims{
		Issuer:    s.URL(),
		Subject:   c.Subject,
		Audience:  jwt.Audience(c.Audience),
		IssuedAt:  jwt.NewNumericDate(iat),
		NotBefore: jwt.NewNumericDate(iat),
		Expiry:    jwt.NewNumericDate(iat.Add(ttl)),
		ID:        c.ID,
	}
	extra := maps.Clone(c.Extra)
	for _, k := range []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti"} {
		delete(extra, k)
	}
	claims := []any{std}
	if len(extra) > 0 {
		claims = append(claims, extra)
	}
	raw, err := s.oidc.sign(claims...)
	if err != nil {
		return "", fmt.Errorf("fakeidp: signing workload JWT: %w", err)
	}
	return raw, nil
}

// RotateSigningKey makes a new RSA key the signing key and publishes it
// in the JWKS. With retire the old keys leave the JWKS (JWTs they signed
// stop verifying once a verifier refetches); otherwise they stay
// published, as issuers do during a rotation. It needs [Config.OIDC].
func (s *Server) RotateSigningKey(retire bool) error {
	if s.oidc == nil {
		return errors.New("fakeidp: key rotation needs OIDC on")
	}
	s.randMu.Lock()
	defer s.randMu.Unlock()
	return s.oidc.rotate(nil, s.rand, retire)
}

// handleAdminWorkloadToken serves POST /admin/workload-token (form: sub,
// aud (repeatable), ttl (a Go duration), jti, and claim=name=value
// (repeatable; values true/false and numbers are sent as JSON booleans and
// numbers)): it answers {"token": "<JWT>"} minted by [Server.MintWorkloadJWT].
func (s *Server) handleAdminWorkloadToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	bad := func(desc string) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": desc})
	}
	if err := r.ParseForm(); err != nil {
		bad("The body must be form-encoded.")
		return
	}
	c := WorkloadClaims{Subject: r.Form.Get("sub"), Audience: r.Form["aud"], ID: r.Form.Get("jti"), Extra: map[string]any{}}
	if v := r.Form.Get("ttl"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			bad("ttl: want a positive Go duration such as 10m.")
			return
		}
		c.TTL = d
	}
	for _, kv := range r.Form["claim"] {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			bad("claim: want name=value.")
			return
		}
		var v any = value
		var js any
		if json.Unmarshal([]byte(value), &js) == nil {
			switch js.(type) {
			case bool, float64:
				v = js
			}
		}
		c.Extra[name] = v
	}
	tok, err := s.MintWorkloadJWT(c)
	if err != nil {
		bad(err.Error())
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]string{"token": tok})
}

// handleAdminRotateKey serves POST /admin/rotate-key (form: retire=true to
// drop the old keys from the JWKS).
func (s *Server) handleAdminRotateKey(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	_ = r.ParseForm()
	if err := s.RotateSigningKey(r.Form.Get("retire") == "true"); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": len(s.oidc.keySet().Keys)})
}
