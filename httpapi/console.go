package httpapi

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apikey"
)

// The admin console (package web) acts through the same code as the API:
// these methods make *Server a web.ConsoleBackend. None of them records an
// audit event; the console records its own, with its actor.

// AuthenticateKey verifies a presented API key as the API's bearer
// authentication does: the same [tokenbroker.EUNAUTHORIZED] error for
// every failure, whatever was wrong.
func (s *Server) AuthenticateKey(ctx context.Context, presented string) (*tokenbroker.APIKey, error) {
	prefix, secret, err := apikey.Parse(presented)
	if err != nil {
		return nil, errUnauthorized
	}
	k, err := s.keys.get(ctx, prefix)
	if err != nil {
		if tokenbroker.IsNotFound(err) {
			return nil, errUnauthorized
		}
		return nil, err
	}
	if !apikey.VerifySecret(secret, k.SecretHash) || k.Revoked() {
		return nil, errUnauthorized
	}
	s.usage.note(ctx, s, k.APIKey)
	return k.APIKey, nil
}

// CreateKey validates and stores a new API key as POST /api/v1/api-keys
// does, and returns it with its plaintext, to be shown once.
func (s *Server) CreateKey(ctx context.Context, name string, scopes, users, providers []string) (*tokenbroker.APIKey, string, error) {
	nk, plaintext, err := apikey.New(s.rand, name, scopes, users, providers)
	if err != nil {
		return nil, "", err
	}
	created, err := s.store.CreateAPIKey(ctx, nk)
	if err != nil {
		return nil, "", err
	}
	return created, plaintext, nil
}

// RevokeKey revokes the key with id and makes the revocation effective on
// this server at once (other replicas: within APIKeyCacheTTL). It returns
// the key as it was before; an error with the key set means the store
// failed to revoke it.
func (s *Server) RevokeKey(ctx context.Context, id int64) (*tokenbroker.APIKey, error) {
	keys, err := s.store.ListAPIKeys(ctx)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(keys, func(k *tokenbroker.APIKey) bool { return k.ID == id })
	if i < 0 {
		return nil, tokenbroker.Errorf(tokenbroker.ENOTFOUND, "no API key with id %d", id)
	}
	if err := s.store.RevokeAPIKey(ctx, id); err != nil {
		return keys[i], err
	}
	s.keys.forget(keys[i].Prefix)
	return keys[i], nil
}

// DeleteLinkRevoking revokes the link's grant at the provider (best
// effort, bounded by ProviderTimeout) and deletes the link whatever the
// provider said, as DELETE /api/v1/users/{u}/links/{p} does, writing the
// audit event that event makes of the revocation's outcome and the
// link.deleted webhook event in the same transaction. revocation is "revoked", "not_supported" or "failed:
// <reason>"; it is "" when nothing was done (no link).
func (s *Server) DeleteLinkRevoking(ctx context.Context, userID, providerID string, event func(revocation string) tokenbroker.AuditEvent) (revocation string, err error) {
	l, err := s.store.GetLink(ctx, userID, providerID)
	if err != nil {
		return "", err
	}
	revocation = s.revoke(ctx, providerID, &l.Token)
	rec := tokenbroker.Record{Events: []tokenbroker.Event{tokenbroker.LinkEvent(tokenbroker.EventLinkDeleted, l, "", "")}}
	if event != nil {
		rec.Audit = []tokenbroker.AuditEvent{event(revocation)}
	}
	return revocation, s.store.DeleteLink(ctx, userID, providerID, rec)
}

// CreateConnectURL creates a connect session for userID limited to
// providers, on behalf of k, as POST /api/v1/connect-sessions does, and
// returns its URL (which holds the session's secret) and expiry.
func (s *Server) CreateConnectURL(ctx context.Context, k *tokenbroker.APIKey, userID string, providers []string) (string, time.Time, error) {
	sess, err := s.newConnectSession(ctx, keyCaller(k), userID, providers, "")
	if err != nil {
		return "", time.Time{}, err
	}
	return s.connectURL(sess.ID), sess.ExpiresAt.UTC(), nil
}

// keyUsageEvery is how often a key's last use is written, at most, per
// replica (and, by the store's condition, about as often across them).
const keyUsageEvery = time.Minute

// keyUsage remembers when this replica last recorded each key's use, so
// that a busy key costs one store write a minute, not one per request.
// Its mutex guards only the map; it touches none of the refresh
// invariants of docs/design.md.
type keyUsage struct {
	mu   sync.Mutex
	last map[int64]time.Time
}

// note records k's use if this replica has not done so within
// keyUsageEvery. A failure is logged and otherwise ignored: the last use
// is informational and must never fail a request.
func (u *keyUsage) note(ctx context.Context, s *Server, k *tokenbroker.APIKey) {
	now := s.now()
	u.mu.Lock()
	if u.last == nil {
		u.last = make(map[int64]time.Time)
	}
	if t, ok := u.last[k.ID]; ok && now.Sub(t) < keyUsageEvery {
		u.mu.Unlock()
		return
	}
	if len(u.last) >= maxCachedKeys {
		clear(u.last)
	}
	u.last[k.ID] = now
	u.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), keyLookupTimeout)
	defer cancel()
	if err := s.store.TouchAPIKeyUsage(ctx, k.ID, keyUsageEvery); err != nil {
		s.log.WarnContext(ctx, "cannot record the API key's last use", "key_prefix", k.Prefix, "err", err.Error())
	}
}
