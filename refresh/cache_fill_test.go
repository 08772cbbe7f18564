package refresh_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/refresh"
)

// gatedReads is a store whose link reads wait for gate, counting them.
// Only GetLink is used: the link is fresh, nothing is refreshed.
type gatedReads struct {
	refresh.Store
	link  tokenbroker.Link
	gate  chan struct{}
	reads atomic.Int32
}

func (s *gatedReads) GetLink(ctx context.Context, userID, providerID string) (*tokenbroker.Link, error) {
	s.reads.Add(1)
	select {
	case <-s.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	l := s.link
	return &l, nil
}

type oneProvider struct{ tokenbroker.Provider }

func (oneProvider) ID() string                  { return "p" }
func (oneProvider) RefreshAhead() time.Duration { return time.Minute }

type oneProviders struct{}

func (oneProviders) Provider(id string) (tokenbroker.Provider, error) {
	if id != "p" {
		return nil, tokenbroker.Errorf(tokenbroker.ENOTFOUND, "no provider %q", id)
	}
	return oneProvider{}, nil
}
func (oneProviders) List() []tokenbroker.Provider { return []tokenbroker.Provider{oneProvider{}} }

type quietFeed struct{}

func (quietFeed) OnChange(func(int64)) func()               { return func() {} }
func (quietFeed) Subscribe(int64) (<-chan struct{}, func()) { return nil, func() {} }

// TestCacheFillSharesOneRead: fifty callers of one replica that miss the
// cache for the same link at the same time (a cold cache, a herd at
// expiry) cause one store read, not fifty, and all get the token; the
// next caller is served from the cache the read filled.
func TestCacheFillSharesOneRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &gatedReads{gate: make(chan struct{}), link: tokenbroker.Link{ID: 1, UserID: "u", ProviderID: "p",
			State: tokenbroker.LinkActive, Generation: 3,
			Token: tokenbroker.Token{AccessToken: "at", RefreshToken: "rt", Expiry: time.Now().Add(time.Hour)}}}
		co, err := refresh.New(refresh.Config{Store: st, Signaler: quietFeed{}, Providers: oneProviders{}, Owner: "r1",
			Changes: quietFeed{}, CacheTTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		defer co.Close()
		ctx := context.Background()
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				if tok, err := co.Token(ctx, "p", "u", 0); err != nil || tok.AccessToken != "at" {
					t.Errorf("Token = %v, %v", tok, err)
				}
			})
		}
		synctest.Wait() // every caller waits: one in the read, the others on it
		close(st.gate)
		wg.Wait()
		if n := st.reads.Load(); n != 1 {
			t.Errorf("%d store reads for 50 callers missing together, want 1", n)
		}
		if _, err := co.Token(ctx, "p", "u", 0); err != nil || st.reads.Load() != 1 {
			t.Errorf("the next caller: %v, %d reads; want it served from the cache", err, st.reads.Load())
		}
	})
}

// countedReads counts a store's link reads.
type countedReads struct {
	refresh.Store
	reads atomic.Int32
}

func (s *countedReads) GetLink(ctx context.Context, userID, providerID string) (*tokenbroker.Link, error) {
	s.reads.Add(1)
	return s.Store.GetLink(ctx, userID, providerID)
}

// TestCacheSpentTokenJoinsFlightWithoutRead: a caller whose cached token
// has expired does not read the link before joining the flight, which
// reads it (once) and refreshes it; the caller gets the fresh token.
func TestCacheSpentTokenJoinsFlightWithoutRead(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "sqlite"})
	var st *countedReads
	a := e.coordinator(0, nil, func(cfg *refresh.Config) {
		st = &countedReads{Store: cfg.Store}
		cfg.Store = st
		cfg.Changes = e.stores[0].(tokenbroker.ChangeFeed)
		cfg.CacheTTL = time.Hour
	})
	defer a.Close()
	ctx := context.Background()
	_, first := e.seed("u1")
	if got, err := a.Token(ctx, providerID, "u1", 0); err != nil || got.AccessToken != first.AccessToken {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Hour) // the cached token has expired
	st.reads.Store(0)
	got, err := a.Token(ctx, providerID, "u1", 0)
	if err != nil || got.AccessToken == first.AccessToken {
		t.Fatalf("after expiry: %v (the old token: %v)", err, got != nil && got.AccessToken == first.AccessToken)
	}
	if n := st.reads.Load(); n != 1 {
		t.Errorf("%d link reads for a refresh of a cached link, want 1 (the flight's)", n)
	}
	if n := e.idp.Stats().RefreshCalls; n != 1 {
		t.Errorf("%d refresh calls, want 1", n)
	}
}
