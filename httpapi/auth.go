package httpapi

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tokenbroker/tokenbroker"
)

// DefaultAPIKeyCacheTTL is how long a key read from the store is trusted
// without reading it again: the longest a revocation made by another
// replica (or by `tokenbroker apikeys revoke` on the database) takes to be
// effective. A revocation through this server's API is effective at once.
const DefaultAPIKeyCacheTTL = 10 * time.Second

// maxCachedKeys bounds the key cache; a full cache is swept of expired
// entries and, if still full, emptied.
const maxCachedKeys = 10000

// keyLookupTimeout bounds one store read of a key.
const keyLookupTimeout = 5 * time.Second

// keyCache keeps recently used API keys by prefix, so that verifying a key
// on the hot path costs one SHA-256 and a map lookup, not a database read.
// Only rows that exist are cached; the secret is still compared (in
// constant time) against the cached hash on every request. Unknown
// prefixes are not cached (that would let a caller fill the cache), so each
// request with an unknown key reads the store once; concurrent reads of one
// prefix are collapsed.
//
// The cache's locking protects only its map; it touches none of DESIGN.md's
// refresh invariants I1–I6 (keys are not part of the refresh protocol). Its
// one consistency rule is documented: a key revoked elsewhere may be
// accepted for up to ttl.
type keyCache struct {
	store tokenbroker.APIKeyStore
	ttl   time.Duration
	now   func() time.Time

	mu      sync.RWMutex
	entries map[string]keyCacheEntry
	group   singleflight.Group // one store read per prefix at a time
}

type keyCacheEntry struct {
	key   *tokenbroker.APIKey
	until time.Time
}

func newKeyCache(store tokenbroker.APIKeyStore, ttl time.Duration, now func() time.Time) *keyCache {
	return &keyCache{store: store, ttl: ttl, now: now, entries: make(map[string]keyCacheEntry)}
}

// get returns the key with prefix from the cache or the store.
func (c *keyCache) get(ctx context.Context, prefix string) (*tokenbroker.APIKey, error) {
	now := c.now()
	c.mu.RLock()
	e, ok := c.entries[prefix]
	c.mu.RUnlock()
	if ok && now.Before(e.until) {
		return e.key, nil
	}
	v, err, _ := c.group.Do(prefix, func() (any, error) {
		// Shared by every caller waiting on this prefix: not bound to the
		// first caller's context, but bounded.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), keyLookupTimeout)
		defer cancel()
		k, err := c.store.GetAPIKeyByPrefix(lctx, prefix)
		if err != nil {
			return nil, err
		}
		c.put(prefix, k)
		return k, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*tokenbroker.APIKey), nil
}

func (c *keyCache) put(prefix string, k *tokenbroker.APIKey) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxCachedKeys {
		for p, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, p)
			}
		}
		if len(c.entries) >= maxCachedKeys {
			clear(c.entries)
		}
	}
	c.entries[prefix] = keyCacheEntry{key: k, until: now.Add(c.ttl)}
}

// forget drops prefix from the cache (after a revocation through the API).
func (c *keyCache) forget(prefix string) {
	c.mu.Lock()
	delete(c.entries, prefix)
	c.mu.Unlock()
}

// authenticate verifies the request's bearer key (RFC 6750 §2.1). Every
// failure is the same [tokenbroker.EUNAUTHORIZED] error, so a caller learns
// nothing about which part was wrong.
func (s *Server) authenticate(r *http.Request) (*tokenbroker.APIKey, error) {
	h := r.Header.Get("Authorization")
	const scheme = "Bearer "
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return nil, errUnauthorized
	}
	prefix, secret, err := ParseAPIKey(strings.TrimSpace(h[len(scheme):]))
	if err != nil {
		return nil, errUnauthorized
	}
	k, err := s.keys.get(r.Context(), prefix)
	if err != nil {
		if tokenbroker.IsNotFound(err) {
			return nil, errUnauthorized
		}
		return nil, err
	}
	if !VerifyAPIKeySecret(secret, k.SecretHash) || k.Revoked() {
		return nil, errUnauthorized
	}
	return k, nil
}

var errUnauthorized = tokenbroker.Errorf(tokenbroker.EUNAUTHORIZED, "a valid API key is required: Authorization: Bearer <key>")

// authorize checks that k has scope and may act for userID and providerID
// (each skipped when ""). A key restricted to other users or providers gets
// [tokenbroker.EFORBIDDEN], never the resource: user and provider ids are
// the platform's own, not secrets, and a clear 403 is easier to debug than a
// 404 that lies.
func authorize(k *tokenbroker.APIKey, scope, userID, providerID string) error {
	if scope != "" && !k.HasScope(scope) {
		return tokenbroker.Errorf(tokenbroker.EFORBIDDEN, "this API key lacks the %s scope", scope)
	}
	if userID != "" && !k.AllowsUser(userID) {
		return tokenbroker.Errorf(tokenbroker.EFORBIDDEN, "this API key may not act for this user")
	}
	if providerID != "" && !k.AllowsProvider(providerID) {
		return tokenbroker.Errorf(tokenbroker.EFORBIDDEN, "this API key may not act on this provider")
	}
	return nil
}

// authorizeAdmin checks that k is an unrestricted admin key. A restricted
// admin key must not manage keys (it could mint an unrestricted one) nor
// read other users' audit trail.
func authorizeAdmin(k *tokenbroker.APIKey) error {
	if !k.HasScope(tokenbroker.ScopeAdmin) {
		return tokenbroker.Errorf(tokenbroker.EFORBIDDEN, "this API key lacks the admin scope")
	}
	if len(k.Users) > 0 || len(k.Providers) > 0 {
		return tokenbroker.Errorf(tokenbroker.EFORBIDDEN, "key management and the audit log need an admin key without user or provider restrictions")
	}
	return nil
}
