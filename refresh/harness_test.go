package refresh_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/idptest"
	"github.com/tokenbroker/tokenbroker/internal/testclock"
	"github.com/tokenbroker/tokenbroker/internal/testdb"
	"github.com/tokenbroker/tokenbroker/provider"
	"github.com/tokenbroker/tokenbroker/refresh"
)

const providerID = "idp"

// newClock is the settable clock shared by fakeidp and the coordinators,
// so token expiry is driven exactly; leases and backoff stay on the
// database's clock, and waits (After) on the real one.
func newClock() *testclock.Clock {
	return testclock.New(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
}

// replicaStore is one replica's view of the database: a Store and its
// Signaler (for PostgreSQL each replica has its own pool and listener).
type replicaStore interface {
	tokenbroker.Store
	tokenbroker.Signaler
}

// env is a test world: one fakeidp, one database, n replicas' stores.
type env struct {
	t      *testing.T
	clock  *testclock.Clock
	idp    *fakeidp.Server
	prov   tokenbroker.Provider
	stores []replicaStore
}

type envOptions struct {
	kind          string // sqlite or postgres
	replicas      int
	idp           fakeidp.Config
	refreshAhead  time.Duration
	postgresQuery string // extra URL query for PostgreSQL stores, e.g. pool_max_conns=1
}

// MustEnv builds an env; everything is closed at test cleanup.
func MustEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	if o.replicas == 0 {
		o.replicas = 1
	}
	e := &env{t: t, clock: newClock()}
	o.idp.Now = e.clock.Now
	if o.idp.AccessTokenTTL == 0 {
		o.idp.AccessTokenTTL = time.Hour
	}
	idp := idptest.MustStart(t, o.idp)
	e.idp = idp
	e.prov = MustProvider(t, idp, o.refreshAhead, e.clock.Now)

	switch o.kind {
	case "sqlite":
		s := testdb.SQLite(t)
		for range o.replicas {
			e.stores = append(e.stores, s)
		}
	case "postgres":
		for _, s := range testdb.PostgresReplicas(t, o.replicas, o.postgresQuery) {
			e.stores = append(e.stores, s)
		}
	default:
		t.Fatalf("unknown store kind %q", o.kind)
	}
	return e
}

// MustProvider returns a generic OAuth2 provider speaking to idp.
func MustProvider(tb testing.TB, idp *fakeidp.Server, refreshAhead time.Duration, now func() time.Time) tokenbroker.Provider {
	tb.Helper()
	ahead := provider.Duration(refreshAhead)
	pc := idptest.OAuth2(idp, providerID)
	pc.RefreshAhead = &ahead
	p, err := provider.New(context.Background(), pc, provider.Options{Now: now})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// providers is a one-provider registry, optionally wrapping the provider
// (to inject faults into a replica's calls).
type providers struct{ p tokenbroker.Provider }

func (r providers) Provider(id string) (tokenbroker.Provider, error) {
	if id != r.p.ID() {
		return nil, tokenbroker.Errorf(tokenbroker.ENOTFOUND, "unknown provider %q", id)
	}
	return r.p, nil
}

func (r providers) List() []tokenbroker.Provider { return []tokenbroker.Provider{r.p} }

// coordinator returns a coordinator for replica i with cfg's overrides.
func (e *env) coordinator(i int, p tokenbroker.Provider, mod func(*refresh.Config)) *refresh.Coordinator {
	e.t.Helper()
	if p == nil {
		p = e.prov
	}
	cfg := refresh.Config{
		Store: e.stores[i], Signaler: e.stores[i], Providers: providers{p},
		Owner: "replica-" + string(rune('a'+i)), Clock: e.clock,
		LeaseTTL: 10 * time.Second, ProviderTimeout: 3 * time.Second,
		Rand: func() float64 { return 0.5 },
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := refresh.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	// Before the stores close (cleanups run last-in first-out): detached
	// flights finish and commit.
	e.t.Cleanup(c.Close)
	return c
}

// seed links user to the provider with a fresh token family.
func (e *env) seed(user string) (*tokenbroker.Link, *fakeidp.Token) {
	e.t.Helper()
	tok, err := e.idp.IssueToken(user)
	if err != nil {
		e.t.Fatal(err)
	}
	l, err := e.stores[0].PutLink(context.Background(), &tokenbroker.Link{
		UserID: user, ProviderID: providerID,
		Token: tokenbroker.Token{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: "Bearer",
			Expiry: tok.Expiry, IssuedAt: e.clock.Now()},
	}, tokenbroker.Record{})
	if err != nil {
		e.t.Fatal(err)
	}
	return l, tok
}

// askInBackground asks c for user's token on a goroutine and sends its
// access token to got; an error fails t, naming who asked, and sends "".
func askInBackground(ctx context.Context, t *testing.T, c *refresh.Coordinator, user, who string, got chan<- string) {
	go func() {
		tok, err := c.Token(ctx, providerID, user, 0)
		if err != nil {
			t.Errorf("%s: %v", who, err)
			got <- ""
			return
		}
		got <- tok.AccessToken
	}()
}

// keepAsking runs n callers for d: caller i asks cs[i%len(cs)] for
// users[i%len(users)]'s token again and again, pausing between answers.
// An error other than provider_unavailable fails t.
func keepAsking(t *testing.T, d time.Duration, n int, pause time.Duration, cs []*refresh.Coordinator, users []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				_, err := cs[i%len(cs)].Token(ctx, providerID, users[i%len(users)], 0)
				if err != nil && !errors.Is(err, tokenbroker.ErrProviderUnavailable) && ctx.Err() == nil {
					t.Errorf("caller: %v", err)
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		})
	}
	wg.Wait()
}

// seedExpired seeds user's link and moves the clock past its token's
// expiry (fakeidp's tokens last an hour): the next Token call refreshes.
func (e *env) seedExpired(user string) (*tokenbroker.Link, *fakeidp.Token) {
	e.t.Helper()
	l, tok := e.seed(user)
	e.clock.Advance(2 * time.Hour)
	return l, tok
}

func (e *env) link(user string) *tokenbroker.Link {
	e.t.Helper()
	l, err := e.stores[0].GetLink(context.Background(), user, providerID)
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

// gatedProvider wraps a real provider: Refresh announces itself on entered
// and waits for release before calling through. It injects the timing of
// a slow provider deterministically.
type gatedProvider struct {
	tokenbroker.Provider
	entered chan struct{}
	release chan struct{}
	calls   atomic.Int64
}

func newGated(p tokenbroker.Provider) *gatedProvider {
	return &gatedProvider{Provider: p, entered: make(chan struct{}, 100), release: make(chan struct{})}
}

func (g *gatedProvider) Refresh(ctx context.Context, rt string) (*tokenbroker.Token, error) {
	g.calls.Add(1)
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, &tokenbroker.ProviderError{ProviderID: g.ID(), Class: tokenbroker.FailureNotProcessed, Err: ctx.Err()}
	}
	return g.Provider.Refresh(ctx, rt)
}

// lostAcquisitionSpy is a store that reports, by closing first, the first
// acquisition that lost to another holder.
type lostAcquisitionSpy struct {
	replicaStore
	once  sync.Once
	first chan struct{}
}

func (s *lostAcquisitionSpy) AcquireLease(ctx context.Context, r tokenbroker.LeaseRequest) (*tokenbroker.LeaseGrant, error) {
	g, err := s.replicaStore.AcquireLease(ctx, r)
	if err == nil && !g.Won && g.LeaseOwner != "" {
		s.once.Do(func() { close(s.first) })
	}
	return g, err
}

// faultyStore fails CommitRefresh a number of times, as a database that
// drops connections would.
type faultyStore struct {
	replicaStore
	commitFailures atomic.Int64
	// failedDownTo, when set, is closed by the failure that leaves
	// commitFailures at downTo.
	failedDownTo chan struct{}
	downTo       int64
}

var errDatabaseDown = errors.New("injected: connection reset by peer")

func (f *faultyStore) CommitRefresh(ctx context.Context, lease tokenbroker.Lease, l *tokenbroker.Link, rec tokenbroker.Record) (bool, error) {
	if n := f.commitFailures.Add(-1); n >= 0 {
		if n == f.downTo && f.failedDownTo != nil {
			close(f.failedDownTo)
		}
		return false, errDatabaseDown
	}
	return f.replicaStore.CommitRefresh(ctx, lease, l, rec)
}

// waitTimeout bounds any wait for an event in these tests.
const waitTimeout = 20 * time.Second

func recv(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// partitionedStore fails every call while cut is set: a replica that lost
// its database (or stands for a dead process: its renewals and commits
// fail, its lease expires).
type partitionedStore struct {
	replicaStore
	cut atomic.Bool
}

func (p *partitionedStore) err() error {
	if p.cut.Load() {
		return errDatabaseDown
	}
	return nil
}

func (p *partitionedStore) GetLink(ctx context.Context, user, prov string) (*tokenbroker.Link, error) {
	if err := p.err(); err != nil {
		return nil, err
	}
	return p.replicaStore.GetLink(ctx, user, prov)
}

func (p *partitionedStore) RenewLease(ctx context.Context, lease tokenbroker.Lease, ttl time.Duration) (bool, error) {
	if err := p.err(); err != nil {
		return false, err
	}
	return p.replicaStore.RenewLease(ctx, lease, ttl)
}

func (p *partitionedStore) CommitRefresh(ctx context.Context, lease tokenbroker.Lease, l *tokenbroker.Link, rec tokenbroker.Record) (bool, error) {
	if err := p.err(); err != nil {
		return false, err
	}
	return p.replicaStore.CommitRefresh(ctx, lease, l, rec)
}

func (p *partitionedStore) MarkReauthRequired(ctx context.Context, lease tokenbroker.Lease, r tokenbroker.Reauth, rec tokenbroker.Record) (bool, error) {
	if err := p.err(); err != nil {
		return false, err
	}
	return p.replicaStore.MarkReauthRequired(ctx, lease, r, rec)
}

func (p *partitionedStore) ReleaseLease(ctx context.Context, lease tokenbroker.Lease, r tokenbroker.Release, rec tokenbroker.Record) (bool, error) {
	if err := p.err(); err != nil {
		return false, err
	}
	return p.replicaStore.ReleaseLease(ctx, lease, r, rec)
}

// waitPast waits until the database's clock is past t (a backoff or a
// lease on that clock); there is no event to wait for.
func waitPast(t *testing.T, s tokenbroker.Store, at time.Time) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		now, err := s.Now(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if now.After(at) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the database clock did not pass %v", at)
		}
		time.Sleep(min(at.Sub(now)+time.Millisecond, 100*time.Millisecond))
	}
}

// afterAnswer wraps a provider: once a refresh has been answered (the
// provider rotated the token), hook runs before the answer returns to the
// coordinator, standing for what happens to a replica in the window
// between the provider's answer and the commit.
type afterAnswer struct {
	tokenbroker.Provider
	hook func()
}

func (a afterAnswer) Refresh(ctx context.Context, rt string) (*tokenbroker.Token, error) {
	tok, err := a.Provider.Refresh(ctx, rt)
	if err == nil {
		a.hook()
	}
	return tok, err
}
