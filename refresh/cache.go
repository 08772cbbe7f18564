package refresh

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sync/singleflight"

	"github.com/tokenbroker/tokenbroker"
)

// Defaults of the token cache's bounds ([Config].CacheMaxEntries and
// CacheMaxBytes).
const (
	DefaultCacheMaxEntries = 100_000
	DefaultCacheMaxBytes   = 64 << 20
)

// fillTimeout bounds a read shared by the callers that miss the cache
// together; each caller still leaves when its own context ends.
const fillTimeout = 30 * time.Second

// tokenCache keeps, per replica, the links whose access token was fresh
// when read, so the hot path of step 1 serves them without a database read
// or a decryption. It never decides a refresh: an entry is only served
// while its token is still valid beyond the refresh-ahead window (judged
// again at every hit) and its age is under the TTL.
//
// Coherence: every change the store reports through its
// [tokenbroker.ChangeFeed] (this process's writes at once, other
// replicas' through LISTEN/NOTIFY) drops the entry, and a change that may
// have been missed drops them all. A read that raced with a change is not
// cached (the invalidation sequence moved), so a deleted, re-imported or
// broken link stops being served within the feed's delay, and within the
// TTL at worst if notifications are lost. Serving a cached token that
// another replica has just replaced is stale-while-valid, which step 2
// allows anyway; it never serves an expired token (I5 is unaffected).
//
// Bounds: an entry keeps only what the fast path answers with (never the
// refresh token), and the cache holds at most maxEntries entries and about
// maxBytes of them (each entry's size estimated from its strings and
// fixed overhead). A put that would pass either bound first evicts a
// quarter of the entries, expired ones first, then any (map order), and
// compacts the maps, so the cost of a put stays constant on average and a
// hit writes nothing.
//
// Fill: the callers of one replica that miss the same entry at the same
// time (a herd at expiry, a cold start) share one store read (fill); a
// read that starts just before a caller arrives is one it could have made
// itself a moment earlier, and every decision after it is checked again
// by the flight's own read (step 3 subscribes first) or by the store's
// conditional statements.
type tokenCache struct {
	ttl        time.Duration
	maxEntries int
	maxBytes   int64
	seq        atomic.Uint64 // bumped by every invalidation

	// mu guards the maps and bytes. It protects none of the refresh
	// invariants I1-I6 (the cache never decides a refresh); it keeps the
	// cache's own rule: an entry dropped by an invalidation is not put back
	// by a read older than it.
	mu    sync.RWMutex
	byKey map[cacheKey]*cacheEntry
	ids   map[int64]cacheKey
	bytes int64

	fills singleflight.Group
}

type cacheKey struct{ provider, user string }

type cacheEntry struct {
	link *tokenbroker.Link // what the fast path needs, no refresh token
	at   time.Time         // wall clock, for the TTL
	size int64
	// refreshable: the link had a refresh token.
	refreshable bool
}

func newTokenCache(ttl time.Duration, maxEntries int, maxBytes int64) *tokenCache {
	return &tokenCache{ttl: ttl, maxEntries: maxEntries, maxBytes: maxBytes,
		byKey: map[cacheKey]*cacheEntry{}, ids: map[int64]cacheKey{}}
}

// get returns the cached link, or nil.
func (c *tokenCache) get(providerID, userID string) *tokenbroker.Link {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	e := c.byKey[cacheKey{providerID, userID}]
	c.mu.RUnlock()
	if e == nil || time.Since(e.at) > c.ttl {
		return nil
	}
	return e.link
}

// spent returns the cached link, whatever its age, when its token cannot
// serve a caller asking for minValid at now and the link has a refresh
// token: such a caller will join the link's flight, which subscribes to
// the link and reads it itself (step 3), so the caller's own read would
// only decide what the flight decides again. The cached copy stands for
// that read; nothing is served from it (its token is unusable) and it
// decides nothing but which flight to join: a link deleted, reconnected,
// broken or refreshed since is found so by the flight's read. Nil when
// there is no such entry.
func (c *tokenCache) spent(providerID, userID string, now time.Time, minValid time.Duration) *tokenbroker.Link {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	e := c.byKey[cacheKey{providerID, userID}]
	c.mu.RUnlock()
	if e == nil || !e.refreshable || e.link.Token.ValidFor(now, minValid) {
		return nil
	}
	return e.link
}

// version returns the invalidation sequence to pass to put.
func (c *tokenCache) version() uint64 {
	if c == nil {
		return 0
	}
	return c.seq.Load()
}

// put caches what the fast path needs of l, unless an invalidation
// happened since version was taken, or l alone is too large for the cache.
func (c *tokenCache) put(l *tokenbroker.Link, version uint64) {
	if c == nil {
		return
	}
	e := &cacheEntry{link: &tokenbroker.Link{ID: l.ID, UserID: l.UserID, ProviderID: l.ProviderID,
		State: l.State, Generation: l.Generation, Token: l.Token}, at: time.Now(), refreshable: l.Token.RefreshToken != ""}
	e.link.Token.RefreshToken = ""
	e.size = entrySize(e.link)
	if e.size > c.maxBytes/16 {
		return
	}
	k := cacheKey{l.ProviderID, l.UserID}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seq.Load() != version {
		return
	}
	if old := c.byKey[k]; old != nil {
		c.removeLocked(k, old)
	}
	if len(c.byKey) >= c.maxEntries || c.bytes+e.size > c.maxBytes {
		c.evictLocked()
	}
	c.byKey[k] = e
	c.ids[l.ID] = k
	c.bytes += e.size
}

// evictLocked drops entries until the cache is at most three quarters full
// by count and by size, the expired ones first, then any; then it copies
// the maps, so that the room the dropped entries took (a map never
// shrinks) is given back.
func (c *tokenCache) evictLocked() {
	lowEntries, lowBytes := c.maxEntries-c.maxEntries/4, c.maxBytes-c.maxBytes/4
	over := func() bool { return len(c.byKey) > lowEntries || c.bytes > lowBytes }
	now := time.Now()
	for k, e := range c.byKey {
		if !over() {
			break
		}
		if now.Sub(e.at) > c.ttl {
			c.removeLocked(k, e)
		}
	}
	for k, e := range c.byKey {
		if !over() {
			break
		}
		c.removeLocked(k, e)
	}
	byKey := make(map[cacheKey]*cacheEntry, len(c.byKey))
	for k, e := range c.byKey {
		byKey[k] = e
	}
	ids := make(map[int64]cacheKey, len(c.ids))
	for id, k := range c.ids {
		ids[id] = k
	}
	c.byKey, c.ids = byKey, ids
}

func (c *tokenCache) removeLocked(k cacheKey, e *cacheEntry) {
	delete(c.byKey, k)
	if c.ids[e.link.ID] == k {
		delete(c.ids, e.link.ID)
	}
	c.bytes -= e.size
}

// invalidate drops the entry of linkID, or every entry for 0.
func (c *tokenCache) invalidate(linkID int64) {
	c.seq.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if linkID == 0 {
		clear(c.byKey)
		clear(c.ids)
		c.bytes = 0
		return
	}
	if k, ok := c.ids[linkID]; ok {
		if e := c.byKey[k]; e != nil {
			c.bytes -= e.size
		}
		delete(c.byKey, k)
		delete(c.ids, linkID)
	}
}

// stats returns the number of entries and their estimated size.
func (c *tokenCache) stats() (entries int, bytes int64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.byKey), c.bytes
}

// Fixed costs of an entry: the entry, its link, and a slot in each map
// (key, value and the maps' per-slot overhead, rounded up).
const entryOverhead = int64(unsafe.Sizeof(cacheEntry{})+unsafe.Sizeof(tokenbroker.Link{})) + 2*64

// entrySize estimates the memory an entry holds.
func entrySize(l *tokenbroker.Link) int64 {
	t := &l.Token
	n := entryOverhead + int64(len(l.UserID)+len(l.ProviderID)+len(t.AccessToken)+len(t.TokenType)+len(t.IDToken))
	for _, s := range t.Scopes {
		n += int64(len(s)) + 16
	}
	for k, v := range t.Extra {
		n += int64(len(k)+len(v)) + 48
	}
	return n
}

type fillResult struct {
	link    *tokenbroker.Link
	version uint64
}

// readLink is step 1's read of userID's link to providerID. With the
// cache on, a first read (first) is the cache's fill: the callers that
// miss together share it (see tokenCache); or, when the cache holds the
// link with a token spent for this caller, no read at all: spent stands
// for it (see tokenCache.spent). It returns the version to pass to put.
func (c *Coordinator) readLink(ctx context.Context, providerID, userID string, first bool, spent *tokenbroker.Link) (*tokenbroker.Link, uint64, error) {
	if first && spent != nil {
		return spent, 0, nil
	}
	if c.cache == nil || !first {
		version := c.cache.version()
		l, err := c.cfg.Store.GetLink(ctx, userID, providerID)
		return l, version, err
	}
	ch := c.cache.fills.DoChan(providerID+"\x00"+userID, func() (any, error) {
		// Shared by the callers that wait on it: not bound to the first
		// one's context, but bounded.
		rctx, cancel := c.cfg.Clock.WithTimeout(context.WithoutCancel(ctx), fillTimeout)
		defer cancel()
		version := c.cache.version()
		l, err := c.cfg.Store.GetLink(rctx, userID, providerID)
		if err != nil {
			return nil, err
		}
		return fillResult{l, version}, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, 0, r.Err
		}
		f := r.Val.(fillResult)
		return f.link, f.version, nil
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
}
