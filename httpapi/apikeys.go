package httpapi

import (
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// APIKeyRequest is the body of POST /api/v1/api-keys.
type APIKeyRequest struct {
	Name      string   `json:"name"`
	Scopes    []string `json:"scopes"`
	Users     []string `json:"users"`
	Providers []string `json:"providers"`
}

// APIKeyInfo describes a key without its secret or hash.
type APIKeyInfo struct {
	ID        int64      `json:"id"`
	Prefix    string     `json:"prefix"`
	Name      string     `json:"name"`
	Scopes    []string   `json:"scopes"`
	Users     []string   `json:"users"`
	Providers []string   `json:"providers"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// CreatedAPIKey is the answer to creating a key: the only time the
// plaintext Key is ever shown.
type CreatedAPIKey struct {
	APIKeyInfo
	Key string `json:"key"`
}

// APIKeyList is the body of GET /api/v1/api-keys.
type APIKeyList struct {
	Keys []APIKeyInfo `json:"keys"`
}

// NewAPIKeyInfo describes k as the API (and the CLI's --json) shows it.
func NewAPIKeyInfo(k *tokenbroker.APIKey) APIKeyInfo {
	info := APIKeyInfo{
		ID:        k.ID,
		Prefix:    k.Prefix,
		Name:      k.Name,
		Scopes:    nonNil(k.Scopes),
		Users:     nonNil(k.Users),
		Providers: nonNil(k.Providers),
		CreatedAt: k.CreatedAt.UTC(),
		RevokedAt: timePtr(k.RevokedAt),
	}
	return info
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// NewAPIKey validates the fields of a key to create and returns it, with
// its plaintext, drawing the secret from rand. The HTTP API and
// `tokenbroker apikeys create` share it.
func NewAPIKey(rand io.Reader, name string, scopes, users, providers []string) (k *tokenbroker.APIKey, plaintext string, err error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 100 {
		return nil, "", tokenbroker.Errorf(tokenbroker.EINVALID, "name: want 1-100 characters")
	}
	if len(scopes) == 0 {
		return nil, "", tokenbroker.Errorf(tokenbroker.EINVALID, "scopes: want at least one of %s", strings.Join(tokenbroker.AllScopes, ", "))
	}
	var sc []string
	for _, s := range scopes {
		if !slices.Contains(tokenbroker.AllScopes, s) {
			return nil, "", tokenbroker.Errorf(tokenbroker.EINVALID, "unknown scope %q: want %s", tokenbroker.Truncate(s, 40), strings.Join(tokenbroker.AllScopes, ", "))
		}
		if !slices.Contains(sc, s) {
			sc = append(sc, s)
		}
	}
	if len(users) > 1000 || len(providers) > 100 {
		return nil, "", tokenbroker.Errorf(tokenbroker.EINVALID, "at most 1000 users and 100 providers")
	}
	for _, u := range users {
		if err := tokenbroker.ValidateUserID(u); err != nil {
			return nil, "", err
		}
	}
	for _, p := range providers {
		if err := tokenbroker.ValidateProviderID(p); err != nil {
			return nil, "", err
		}
	}
	plaintext, prefix, hash, err := GenerateAPIKey(rand)
	if err != nil {
		return nil, "", err
	}
	return &tokenbroker.APIKey{
		Prefix:     prefix,
		SecretHash: hash,
		Name:       name,
		Scopes:     sc,
		Users:      slices.Compact(slices.Sorted(slices.Values(users))),
		Providers:  slices.Compact(slices.Sorted(slices.Values(providers))),
	}, plaintext, nil
}

func (s *Server) createAPIKey(w http.ResponseWriter, r *http.Request, k *caller) error {
	if err := authorizeAdmin(k); err != nil {
		return err
	}
	var q APIKeyRequest
	if err := decodeJSON(w, r, &q); err != nil {
		return err
	}
	nk, plaintext, err := NewAPIKey(s.rand, q.Name, q.Scopes, q.Users, q.Providers)
	if err != nil {
		return err
	}
	created, err := s.store.CreateAPIKey(r.Context(), nk)
	s.audit(k, tokenbroker.AuditAPIKeyCreate, "", "", err, "created key "+nk.Prefix+" ("+strings.Join(nk.Scopes, ",")+")")
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, CreatedAPIKey{APIKeyInfo: NewAPIKeyInfo(created), Key: plaintext})
	return nil
}

func (s *Server) listAPIKeys(w http.ResponseWriter, r *http.Request, k *caller) error {
	if err := authorizeAdmin(k); err != nil {
		return err
	}
	keys, err := s.store.ListAPIKeys(r.Context())
	if err != nil {
		return err
	}
	out := APIKeyList{Keys: make([]APIKeyInfo, 0, len(keys))}
	for _, k := range keys {
		out.Keys = append(out.Keys, NewAPIKeyInfo(k))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// revokeAPIKey revokes a key. It is effective at once on this server and
// within APIKeyCacheTTL on other replicas.
func (s *Server) revokeAPIKey(w http.ResponseWriter, r *http.Request, k *caller) error {
	if err := authorizeAdmin(k); err != nil {
		return err
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return tokenbroker.Errorf(tokenbroker.EINVALID, "key id: want a positive integer")
	}
	keys, err := s.store.ListAPIKeys(r.Context())
	if err != nil {
		return err
	}
	i := slices.IndexFunc(keys, func(k *tokenbroker.APIKey) bool { return k.ID == id })
	if i < 0 {
		return tokenbroker.Errorf(tokenbroker.ENOTFOUND, "no API key with id %d", id)
	}
	err = s.store.RevokeAPIKey(r.Context(), id)
	s.audit(k, tokenbroker.AuditAPIKeyRevoke, "", "", err, "revoked key "+keys[i].Prefix)
	if err != nil {
		return err
	}
	s.keys.forget(keys[i].Prefix)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
