package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apikey"
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
// The cache's locking protects only its map; it touches none of docs/design.md's
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
	// caller is the key as a request's caller, made once per entry: the
	// hot path allocates neither it nor its audit actor.
	caller *caller
	until  time.Time
}

func newKeyCache(store tokenbroker.APIKeyStore, ttl time.Duration, now func() time.Time) *keyCache {
	return &keyCache{store: store, ttl: ttl, now: now, entries: make(map[string]keyCacheEntry)}
}

// get returns the key with prefix, as a caller, from the cache or the
// store. The caller is shared by the requests of the entry's lifetime:
// nobody may modify it.
func (c *keyCache) get(ctx context.Context, prefix string) (*caller, error) {
	now := c.now()
	c.mu.RLock()
	e, ok := c.entries[prefix]
	c.mu.RUnlock()
	if ok && now.Before(e.until) {
		return e.caller, nil
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
		return c.put(prefix, k), nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*caller), nil
}

func (c *keyCache) put(prefix string, k *tokenbroker.APIKey) *caller {
	kc := keyCaller(k)
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
	c.entries[prefix] = keyCacheEntry{caller: kc, until: now.Add(c.ttl)}
	return kc
}

// forget drops prefix from the cache (after a revocation through the API).
func (c *keyCache) forget(prefix string) {
	c.mu.Lock()
	delete(c.entries, prefix)
	c.mu.Unlock()
}

// caller is an authenticated caller: a stored API key, or a workload
// whose trust entry's scopes, users and providers are carried in an
// APIKey so every handler applies them exactly as a key's (the key has no
// ID or Prefix then).
type caller struct {
	*tokenbroker.APIKey
	workload *tokenbroker.Workload // nil for an API key
	// keyActor is an API key's audit actor, "key:<prefix>".
	keyActor string
}

// keyCaller returns the caller for the API key k.
func keyCaller(k *tokenbroker.APIKey) *caller {
	return &caller{APIKey: k, keyActor: "key:" + k.Prefix}
}

// workloadCaller returns the caller for a verified workload.
func workloadCaller(w *tokenbroker.Workload) *caller {
	return &caller{
		APIKey: &tokenbroker.APIKey{
			Name: "workload " + w.TrustID, Scopes: w.Scopes, Users: w.Users, Providers: w.Providers,
		},
		workload: w,
	}
}

// actor names the caller in the audit trail: "key:<prefix>", or the
// workload's trust entry, issuer and subject.
func (c *caller) actor() string {
	if c.workload != nil {
		return c.workload.Actor()
	}
	return c.keyActor
}

// createdBy names the caller on the connect sessions it creates.
func (c *caller) createdBy() string {
	if c.workload != nil {
		return "workload:" + c.workload.TrustID
	}
	return c.Prefix
}

// WorkloadVerifier checks a workload's signed JWT (package identity's
// Verifier implements it). It must be safe for concurrent use. A refused
// JWT is reported with an error implementing [WorkloadRefusal]; any other
// error is treated as a refusal with reason "error".
type WorkloadVerifier interface {
	Verify(ctx context.Context, rawJWT string) (*tokenbroker.Workload, error)
}

// WorkloadRefusal is a refused JWT's error.
type WorkloadRefusal interface {
	error
	// RefusalReason is a short label from a small fixed set (the metric
	// label), e.g. "expired".
	RefusalReason() string
	// Description says why, safe to show the caller.
	Description() string
	// ClaimedIssuer is the JWT's unverified iss, for the log.
	ClaimedIssuer() string
}

// Authentication failure reasons, the reason label of
// tokenbroker_auth_failures_total. A refused workload JWT's reason is
// "jwt_" followed by its [WorkloadRefusal.RefusalReason].
const (
	authMissing     = "missing"      // no Authorization: Bearer header
	authMalformed   = "malformed"    // neither an API key nor a JWT
	authUnknownKey  = "unknown_key"  // no key with that prefix
	authWrongSecret = "wrong_secret" // the prefix exists, the secret is wrong
	authRevokedKey  = "revoked_key"
	authNoWorkloads = "jwt_not_configured" // a JWT, but no workload identity is configured
)

// authFailure is a failed authentication: why, and what the request named.
type authFailure struct {
	reason    string
	keyPrefix string // the API key prefix the request named, if any
	issuer    string // the JWT's claimed issuer, if any
	msg       string // for the caller
}

// authenticate verifies the request's bearer credential (RFC 6750 §2.1):
// an API key, or a workload JWT when a [WorkloadVerifier] is configured.
// Every failure answers the same [tokenbroker.EUNAUTHORIZED] error to an
// API key, so a caller learns nothing about which part was wrong; it is
// logged (rate-limited) and counted with its reason.
func (s *Server) authenticate(r *http.Request) (*caller, error) {
	c, fail, err := s.verifyBearer(r)
	if err != nil {
		return nil, err
	}
	if fail != nil {
		s.authFailed(r, fail)
		if strings.HasPrefix(fail.reason, "jwt_") {
			return nil, tokenbroker.Errorf(tokenbroker.EUNAUTHORIZED, "the workload token was refused: %s", fail.msg)
		}
		return nil, errUnauthorized
	}
	return c, nil
}

// verifyBearer returns the caller, or why the credential is refused, or
// an internal error (a store that does not answer).
func (s *Server) verifyBearer(r *http.Request) (*caller, *authFailure, error) {
	h := r.Header.Get("Authorization")
	const scheme = "Bearer "
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return nil, &authFailure{reason: authMissing}, nil
	}
	cred := strings.TrimSpace(h[len(scheme):])
	if !strings.HasPrefix(cred, apikey.Scheme) && strings.Count(cred, ".") == 2 {
		if s.workloads == nil {
			return nil, &authFailure{reason: authNoWorkloads, msg: "this server trusts no workload identity"}, nil
		}
		w, fail := s.verifyWorkload(r.Context(), cred)
		if fail != nil {
			return nil, fail, nil
		}
		return workloadCaller(w), nil, nil
	}
	prefix, secret, err := apikey.Parse(cred)
	if err != nil {
		return nil, &authFailure{reason: authMalformed}, nil
	}
	kc, err := s.keys.get(r.Context(), prefix)
	if err != nil {
		if tokenbroker.IsNotFound(err) {
			return nil, &authFailure{reason: authUnknownKey, keyPrefix: prefix}, nil
		}
		return nil, nil, err
	}
	if !apikey.VerifySecret(secret, kc.SecretHash) {
		return nil, &authFailure{reason: authWrongSecret, keyPrefix: prefix}, nil
	}
	if kc.Revoked() {
		return nil, &authFailure{reason: authRevokedKey, keyPrefix: prefix}, nil
	}
	s.usage.note(r.Context(), s, kc.APIKey)
	return kc, nil, nil
}

// verifyWorkload checks a workload JWT.
func (s *Server) verifyWorkload(ctx context.Context, raw string) (*tokenbroker.Workload, *authFailure) {
	w, err := s.workloads.Verify(ctx, raw)
	if err == nil {
		return w, nil
	}
	var ref WorkloadRefusal
	if errors.As(err, &ref) {
		return nil, &authFailure{reason: "jwt_" + ref.RefusalReason(), issuer: ref.ClaimedIssuer(), msg: ref.Description()}
	}
	s.log.LogAttrs(ctx, slog.LevelError, "workload verifier failed", slog.String("err", err.Error()))
	return nil, &authFailure{reason: "jwt_error", msg: "the token cannot be verified"}
}

var errUnauthorized = tokenbroker.Errorf(tokenbroker.EUNAUTHORIZED, "a valid API key is required: Authorization: Bearer <key>")

// authorize checks that k has scope and may act for userID and providerID
// (each skipped when ""). A key restricted to other users or providers gets
// [tokenbroker.EFORBIDDEN], never the resource: user and provider ids are
// the platform's own, not secrets, and a clear 403 is easier to debug than a
// 404 that lies.
func authorize(k *caller, scope, userID, providerID string) error {
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
func authorizeAdmin(k *caller) error {
	if !k.HasScope(tokenbroker.ScopeAdmin) {
		return tokenbroker.Errorf(tokenbroker.EFORBIDDEN, "this API key lacks the admin scope")
	}
	if len(k.Users) > 0 || len(k.Providers) > 0 {
		return tokenbroker.Errorf(tokenbroker.EFORBIDDEN, "key management and the audit log need an admin key without user or provider restrictions")
	}
	return nil
}
