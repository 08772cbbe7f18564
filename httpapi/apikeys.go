package httpapi

import (
	"net/http"
	"strings"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apikey"
	"github.com/tokenbroker/tokenbroker/apiv1"
)

// NewAPIKeyInfo describes k as the API (and the CLI's --json) shows it.
func NewAPIKeyInfo(k *tokenbroker.APIKey) apiv1.APIKey {
	return apiv1.APIKey{
		ID:        k.ID,
		Prefix:    k.Prefix,
		Name:      k.Name,
		Scopes:    k.Scopes,
		Users:     k.Users,
		Providers: k.Providers,
		CreatedAt: k.CreatedAt.UTC(),
		RevokedAt: k.RevokedAt.UTC(),
	}
}

func (s *Server) createAPIKey(w http.ResponseWriter, r *http.Request, k *caller) error {
	if err := authorizeAdmin(k); err != nil {
		return err
	}
	var q apiv1.APIKeyRequest
	if err := decodeJSON(w, r, &q); err != nil {
		return err
	}
	nk, plaintext, err := apikey.New(s.rand, q.Name, q.Scopes, q.Users, q.Providers)
	if err != nil {
		return err
	}
	created, err := s.store.CreateAPIKey(r.Context(), nk)
	s.audit(k, tokenbroker.AuditAPIKeyCreate, "", "", err, "created key "+nk.Prefix+" ("+strings.Join(nk.Scopes, ",")+")")
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, apiv1.CreatedAPIKey{APIKey: NewAPIKeyInfo(created), Key: plaintext})
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
	out := apiv1.APIKeyList{Keys: make([]apiv1.APIKey, 0, len(keys))}
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
	id, err := tokenbroker.ParseAPIKeyID(r.PathValue("id"))
	if err != nil {
		return err
	}
	if id == k.ID && r.URL.Query().Get("allow_self") != "true" {
		return tokenbroker.Errorf(tokenbroker.ECONFLICT, "key %d is the key making this request; to revoke it anyway, add ?allow_self=true", id)
	}
	revoked, err := s.RevokeKey(r.Context(), id)
	if revoked == nil {
		return err
	}
	s.audit(k, tokenbroker.AuditAPIKeyRevoke, "", "", err, "revoked key "+revoked.Prefix)
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
