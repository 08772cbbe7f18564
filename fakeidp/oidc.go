package fakeidp

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// oidcSigner signs id_tokens and workload JWTs with one RSA key (RS256)
// and publishes its JWKS. The key can be rotated while the server runs;
// mu guards the signer and the published set.
type oidcSigner struct {
	mu     sync.Mutex
	signer jose.Signer
	jwks   jose.JSONWebKeySet
}

// newOIDCSigner uses key, or generates an RSA 2048 key. (Since Go 1.26
// rsa.GenerateKey always draws from a secure source, whatever the reader.)
func newOIDCSigner(key *rsa.PrivateKey, random io.Reader) (*oidcSigner, error) {
	o := &oidcSigner{}
	if err := o.rotate(key, random, false); err != nil {
		return nil, err
	}
	return o, nil
}

// rotate makes key (or a new one) the signing key and publishes it first
// in the JWKS; the previous keys stay published unless retire is set.
func (o *oidcSigner) rotate(key *rsa.PrivateKey, random io.Reader, retire bool) error {
	if key == nil {
		var err error
		if key, err = rsa.GenerateKey(random, 2048); err != nil {
			return fmt.Errorf("fakeidp: generating the signing key: %w", err)
		}
	}
	pub := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.RS256), Use: "sig"}
	thumb, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return fmt.Errorf("fakeidp: key thumbprint: %w", err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: pub.KeyID, Algorithm: string(jose.RS256)}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return fmt.Errorf("fakeidp: signer: %w", err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.signer = signer
	keys := []jose.JSONWebKey{pub}
	if !retire {
		keys = append(keys, o.jwks.Keys...)
	}
	o.jwks = jose.JSONWebKeySet{Keys: keys}
	return nil
}

// sign serializes claims as a JWT signed with the current key.
func (o *oidcSigner) sign(claims ...any) (string, error) {
	o.mu.Lock()
	signer := o.signer
	o.mu.Unlock()
	b := jwt.Signed(signer)
	for _, c := range claims {
		b = b.Claims(c)
	}
	return b.Serialize()
}

// keySet returns the published JWKS.
func (o *oidcSigner) keySet() jose.JSONWebKeySet {
	o.mu.Lock()
	defer o.mu.Unlock()
	return jose.JSONWebKeySet{Keys: append([]jose.JSONWebKey(nil), o.jwks.Keys...)}
}

// idClaims are the claims of an id_token (OpenID Connect Core §2, §5.1).
type idClaims struct {
	jwt.Claims
	Nonce             string `json:"nonce,omitempty"`
	AuthTime          int64  `json:"auth_time"`
	AtHash            string `json:"at_hash"`
	Email             string `json:"email,omitempty"`
	EmailVerified     bool   `json:"email_verified"`
	PreferredUsername string `json:"preferred_username"`
	Name              string `json:"name,omitempty"`
}

// idToken signs an id_token for u, issued by issuer along with tok.
func (s *Server) idToken(issuer string, u User, tok *Token, nonce string, now time.Time) (string, error) {
	sum := sha256.Sum256([]byte(tok.AccessToken))
	s.mu.Lock()
	authTime := now
	if fam := s.fams[tok.Family]; fam != nil {
		authTime = fam.authTime
	}
	s.mu.Unlock()
	c := idClaims{
		Claims: jwt.Claims{
			Issuer:   issuer,
			Subject:  u.ID,
			Audience: jwt.Audience{s.cfg.ClientID},
			IssuedAt: jwt.NewNumericDate(now),
			Expiry:   jwt.NewNumericDate(now.Add(s.cfg.AccessTokenTTL)),
		},
		Nonce:             nonce,
		AuthTime:          authTime.Unix(),
		AtHash:            base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2]), // OIDC Core §3.1.3.6
		Email:             u.Email,
		EmailVerified:     u.Email != "",
		PreferredUsername: u.Login,
		Name:              u.Name,
	}
	raw, err := s.oidc.sign(c)
	if err != nil {
		return "", fmt.Errorf("fakeidp: signing id_token: %w", err)
	}
	return raw, nil
}

// handleJWKS publishes the signing key (RFC 7517). 404 unless OIDC is on.
func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	if s.oidc == nil {
		http.NotFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, s.oidc.keySet())
}

// handleDiscovery serves the OpenID Provider metadata (OpenID Connect
// Discovery 1.0 §3, 404 unless OIDC is on) and the OAuth authorization
// server metadata (RFC 8414, always).
func (s *Server) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == PathDiscovery && s.oidc == nil {
		http.NotFound(w, r)
		return
	}
	e := endpointsAt(s.base(r))
	var auth []string
	switch s.cfg.ClientAuth {
	case ClientAuthBasic:
		auth = []string{"client_secret_basic"}
	case ClientAuthForm:
		auth = []string{"client_secret_post"}
	default:
		auth = []string{"client_secret_basic", "client_secret_post"}
	}
	if s.cfg.PublicClient {
		auth = append(auth, "none")
	}
	doc := map[string]any{
		"issuer":                                         e.Issuer,
		"authorization_endpoint":                         e.Authorize,
		"token_endpoint":                                 e.Token,
		"device_authorization_endpoint":                  e.DeviceAuthorization,
		"revocation_endpoint":                            e.Revoke,
		"userinfo_endpoint":                              e.Userinfo,
		"response_types_supported":                       []string{"code"},
		"grant_types_supported":                          []string{grantCode, grantRefresh, grantDevice},
		"code_challenge_methods_supported":               []string{"S256"},
		"token_endpoint_auth_methods_supported":          auth,
		"revocation_endpoint_auth_methods_supported":     auth,
		"authorization_response_iss_parameter_supported": s.oidc != nil && !s.cfg.NoIssParameter,
	}
	if s.oidc != nil {
		doc["jwks_uri"] = e.JWKS
		doc["subject_types_supported"] = []string{"public"}
		doc["id_token_signing_alg_values_supported"] = []string{"RS256"}
		doc["scopes_supported"] = []string{"openid", "email", "profile"}
		doc["claims_supported"] = []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash",
			"email", "email_verified", "preferred_username", "name"}
	}
	writeJSON(w, http.StatusOK, doc)
}
