package refresh

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

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
type tokenCache struct {
	ttl time.Duration
	seq atomic.Uint64 // bumped by every invalidation

	mu    sync.RWMutex
	byKey map[string]cacheEntry
	ids   map[int64]string
}

type cacheEntry struct {
	link *tokenbroker.Link
	at   time.Time // wall clock, for the TTL
}

func newTokenCache(ttl time.Duration) *tokenCache {
	return &tokenCache{ttl: ttl, byKey: map[string]cacheEntry{}, ids: map[int64]string{}}
}

func cacheKey(providerID, userID string) string { return providerID + "\x00" + userID }

// get returns the cached link, or nil.
func (c *tokenCache) get(key string) *tokenbroker.Link {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	e, ok := c.byKey[key]
	c.mu.RUnlock()
	if !ok || time.Since(e.at) > c.ttl {
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

// put caches l unless an invalidation happened since version was taken.
func (c *tokenCache) put(key string, l *tokenbroker.Link, version uint64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seq.Load() != version {
		return
	}
	c.byKey[key] = cacheEntry{link: l, at: time.Now()}
	c.ids[l.ID] = key
}

// invalidate drops the entry of linkID, or every entry for 0.
func (c *tokenCache) invalidate(linkID int64) {
	c.seq.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if linkID == 0 {
		clear(c.byKey)
		clear(c.ids)
		return
	}
	if key, ok := c.ids[linkID]; ok {
		delete(c.byKey, key)
		delete(c.ids, linkID)
	}
}
