package refresh

import (
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// TestTokenCacheBoundedUnderMillionLinks: a million distinct links put
// into a cache bounded at 10,000 entries and 4 MiB never leave it above
// either bound, and the memory it really holds (the Go heap after a GC,
// with every link it was given dropped) stays under the byte bound plus
// the maps' own slack: the size estimate is not optimistic.
func TestTokenCacheBoundedUnderMillionLinks(t *testing.T) {
	const (
		links      = 1_000_000
		maxEntries = 10_000
		maxBytes   = 4 << 20
	)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	c := newTokenCache(time.Hour, maxEntries, maxBytes)
	before := heap()
	expiry := time.Now().Add(time.Hour)
	pad := strings.Repeat("x", 300)
	scopes, rt := []string{"repo", "read:user"}, "rt-"+pad
	for i := range links {
		// Every link's user id and 300-byte access token are its own, as
		// they are when read from the store.
		n := strconv.Itoa(i)
		c.put(&tokenbroker.Link{ID: int64(i + 1), UserID: "user-" + n, ProviderID: "github", State: tokenbroker.LinkActive,
			Token: tokenbroker.Token{AccessToken: n + pad, RefreshToken: rt, TokenType: "Bearer",
				Expiry: expiry, Scopes: scopes}}, c.version())
		if i%10_000 == 9_999 {
			if n, b := c.stats(); n > maxEntries || b > maxBytes {
				t.Fatalf("after %d links: %d entries, %d bytes; bounds %d, %d", i+1, n, b, maxEntries, maxBytes)
			}
		}
	}
	n, b := c.stats()
	held := int64(heap()) - int64(before)
	t.Logf("%d links put: %d entries, %d bytes estimated, %d bytes held on the heap", links, n, b, held)
	if n == 0 || n > maxEntries || b > maxBytes {
		t.Fatalf("%d entries, %d bytes", n, b)
	}
	// The maps keep their grown buckets: allow them on top of the bound.
	if slack := int64(maxEntries) * 128; held > maxBytes+slack {
		t.Errorf("the cache holds %d bytes of heap, over its %d-byte bound and %d of map slack", held, maxBytes, slack)
	}
	// What a cache keeps is what the fast path needs: never a refresh token.
	for _, e := range c.byKey {
		if e.link.Token.RefreshToken != "" {
			t.Fatal("a cached link holds its refresh token")
		}
	}
	runtime.KeepAlive(c)
}
