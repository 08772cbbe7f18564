package refresh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/backoff"
)

// Defaults of [Config].
const (
	DefaultLeaseTTL            = 10 * time.Second
	DefaultProviderTimeout     = 60 * time.Second
	DefaultGrace               = time.Second
	DefaultPollInterval        = 500 * time.Millisecond
	DefaultCommitRetryInterval = 250 * time.Millisecond
	DefaultCommitRetryFor      = 2 * time.Minute
	DefaultRetryBackoff        = time.Second
	DefaultRetryBackoffMax     = time.Minute
	DefaultUncertainBackoff    = 10 * time.Second
	DefaultUncertainBackoffMax = 5 * time.Minute
	DefaultCircuitThreshold    = 5
	DefaultCircuitOpenFor      = 5 * time.Second
	DefaultCircuitOpenForMax   = 5 * time.Minute
	DefaultMisconfiguredProbe  = 30 * time.Second
	DefaultDegradeAfter        = 10 * time.Minute
)

// Store is what the coordinator needs of storage: the link read and the
// writes of the lease protocol, and the providers' shared health. Each
// method is one statement (or one short transaction) judged on the
// database's clock and holds no connection after it returns (I6).
// tokenbroker.Store implements it.
type Store interface {
	GetLink(ctx context.Context, userID, providerID string) (*tokenbroker.Link, error)
	AcquireLease(ctx context.Context, r tokenbroker.LeaseRequest) (*tokenbroker.LeaseGrant, error)
	RenewLease(ctx context.Context, lease tokenbroker.Lease, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, lease tokenbroker.Lease, r tokenbroker.Release, rec tokenbroker.Record) (bool, error)
	CommitRefresh(ctx context.Context, lease tokenbroker.Lease, l *tokenbroker.Link, rec tokenbroker.Record) (bool, error)
	MarkReauthRequired(ctx context.Context, lease tokenbroker.Lease, r tokenbroker.Reauth, rec tokenbroker.Record) (bool, error)
	tokenbroker.ProviderHealthStore
}

// Clock is the coordinator's time: it judges token expiry and paces every
// wait and timeout of the coordinator (polls, commit retries, lease
// renewal, the provider call's timeout), so that a scheduler that owns the
// clock owns every wait (refresh/sim). Lease and backoff decisions are
// judged on the database's clock, in the store.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
	// WithTimeout returns a copy of ctx that is done once d has passed
	// (its Err is then context.DeadlineExceeded), as context.WithTimeout
	// does on the wall clock.
	WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc)
}

type wallClock struct{}

func (wallClock) Now() time.Time                         { return time.Now() }
func (wallClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
func (wallClock) WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

// Config configures a [Coordinator]. Store, Signaler and Providers are
// required; every other field has a default.
type Config struct {
	Store     Store
	Signaler  tokenbroker.Signaler
	Providers tokenbroker.Providers
	// Auditor receives the events that come with no state change of the
	// link (a holder's refresh lost to a takeover); state changes are
	// recorded with the change itself. nil: none.
	Auditor tokenbroker.Auditor
	Logger  *slog.Logger // nil: slog.Default()

	// Owner identifies this replica as a lease owner (default: a random
	// id). Leases are fenced by an epoch, so a restarted replica reusing
	// its id cannot write with its former self's lease.
	Owner string
	// LeaseTTL is how long a refresh lease lasts unless renewed (default
	// 10s). The holder renews it every RenewEvery (default LeaseTTL/3)
	// while its provider call and its commit last, so a dead holder is
	// taken over about LeaseTTL+Grace after its last renewal.
	LeaseTTL   time.Duration
	RenewEvery time.Duration
	// Grace is how long an expired, unreleased lease stays protected
	// after another replica first found it expired (default 1s): a live
	// holder cut off from the database commits its answer when the
	// database returns, before anybody re-sends its refresh token. It must
	// exceed CommitRetryInterval.
	Grace time.Duration
	// ProviderTimeout bounds one provider call (default 60s); it is not
	// bounded by the lease, which is renewed meanwhile.
	ProviderTimeout time.Duration
	// PollInterval is the fallback poll of a waiter for a missed signal
	// (default 500ms). A waiter never waits past the lease's expiry or
	// grace without reading the link again.
	PollInterval time.Duration
	// CommitRetryInterval caps the wait between retries of a commit that
	// failed on a database error (default 250ms); CommitRetryFor bounds
	// how long a refreshed token's commit is retried (default 2m).
	CommitRetryInterval time.Duration
	CommitRetryFor      time.Duration

	// RetryBackoff and RetryBackoffMax shape the link's backoff after an
	// attempt the provider did not process (default 1s doubling to 1m);
	// UncertainBackoff and UncertainBackoffMax after one it may have
	// processed (default 10s doubling to 5m): re-sending the same refresh
	// token is then the only way to recover, and each re-send risks the
	// grant. A provider's Retry-After lengthens either.
	RetryBackoff, RetryBackoffMax         time.Duration
	UncertainBackoff, UncertainBackoffMax time.Duration
	// CircuitThreshold consecutive failed calls across a provider's links
	// open its circuit (default 5) for CircuitOpenFor, doubling per
	// consecutive opening up to CircuitOpenForMax (defaults 5s, 5m); one
	// call at a time then probes it. A provider that refuses the client
	// is probed every MisconfiguredProbe (default 30s).
	CircuitThreshold                  int
	CircuitOpenFor, CircuitOpenForMax time.Duration
	MisconfiguredProbe                time.Duration
	// DegradeAfter is how long a link's refreshes may keep failing
	// transiently before the failed attempt that finds it so marks the
	// link degraded (default 10m; negative: never).
	DegradeAfter time.Duration

	// Clock is the coordinator's time (default the wall clock).
	Clock Clock
	// Rand draws backoff jitter in [0,1) (default math/rand/v2).
	Rand func() float64
	// Metrics, if set, receives counters (see [NewMetrics]).
	Metrics *Metrics
	// Tracer is the tracer for the coordinator's own spans (nil: none);
	// serve passes the process's, a no-op one unless traces are exported.
	Tracer trace.Tracer

	// Changes, with CacheTTL > 0, enables the per-replica cache of fresh
	// tokens on the fast path (see tokenCache): the store's change feed
	// invalidates it. CacheTTL bounds an entry's age should notifications
	// be lost. Without Changes there is no cache. CacheMaxEntries and
	// CacheMaxBytes bound it (defaults 100,000 entries, 64 MiB).
	Changes         tokenbroker.ChangeFeed
	CacheTTL        time.Duration
	CacheMaxEntries int
	CacheMaxBytes   int64
}

// Stats are counters of one coordinator that tests read; operators see the
// Prometheus metrics (see [NewMetrics]).
type Stats struct {
	Waits         int64 // waits for another holder's refresh
	Takeovers     int64 // leases taken over from a holder that did not release them
	LostRefreshes int64 // rejections explained by an earlier attempt (holder_died, answer_lost)
	LostCommits   int64 // refreshed tokens that could not be committed (lease_lost, commit_failed)
	CommitRetries int64 // commits retried after a database error
}

// Coordinator implements [tokenbroker.TokenService] with the refresh
// protocol of docs/design.md. It is safe for concurrent use; one per
// replica.
type Coordinator struct {
	cfg         Config
	log         *slog.Logger
	cache       *tokenCache
	stopChanges func()

	// mu guards inflight and closed. A link has at most one flight per
	// replica (I1 within the replica, and one re-read per replica for its
	// waiters); Close waits for every flight it let start, so a refresh
	// the provider may have answered is committed before the store closes
	// (I2).
	mu       sync.Mutex
	inflight map[string]*flight
	closed   bool
	flights  sync.WaitGroup

	randMu sync.Mutex

	stats struct {
		waits, takeovers, lostRefreshes, lostCommits, commitRetries atomic.Int64
	}
}

var _ tokenbroker.TokenService = (*Coordinator)(nil)

// New returns a coordinator. It reports a configuration error for missing
// dependencies or inconsistent durations.
func New(cfg Config) (*Coordinator, error) {
	if cfg.Store == nil || cfg.Signaler == nil || cfg.Providers == nil {
		return nil, errors.New("refresh: Store, Signaler and Providers are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.LeaseTTL, DefaultLeaseTTL)
	def(&cfg.RenewEvery, cfg.LeaseTTL/3)
	def(&cfg.Grace, DefaultGrace)
	def(&cfg.ProviderTimeout, DefaultProviderTimeout)
	def(&cfg.PollInterval, DefaultPollInterval)
	def(&cfg.CommitRetryInterval, DefaultCommitRetryInterval)
	def(&cfg.CommitRetryFor, DefaultCommitRetryFor)
	def(&cfg.RetryBackoff, DefaultRetryBackoff)
	def(&cfg.RetryBackoffMax, DefaultRetryBackoffMax)
	def(&cfg.UncertainBackoff, DefaultUncertainBackoff)
	def(&cfg.UncertainBackoffMax, DefaultUncertainBackoffMax)
	def(&cfg.CircuitOpenFor, DefaultCircuitOpenFor)
	def(&cfg.CircuitOpenForMax, DefaultCircuitOpenForMax)
	def(&cfg.MisconfiguredProbe, DefaultMisconfiguredProbe)
	if cfg.DegradeAfter == 0 {
		cfg.DegradeAfter = DefaultDegradeAfter
	}
	if cfg.CircuitThreshold <= 0 {
		cfg.CircuitThreshold = DefaultCircuitThreshold
	}
	if cfg.RenewEvery >= cfg.LeaseTTL {
		return nil, fmt.Errorf("refresh: lease renewal interval %s must be under the lease TTL %s", cfg.RenewEvery, cfg.LeaseTTL)
	}
	if cfg.Grace <= cfg.CommitRetryInterval {
		return nil, fmt.Errorf("refresh: lease grace %s must exceed the commit retry interval %s", cfg.Grace, cfg.CommitRetryInterval)
	}
	if cfg.Clock == nil {
		cfg.Clock = wallClock{}
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.Owner == "" {
		cfg.Owner = fmt.Sprintf("replica-%016x", rand.Uint64())
	}
	if cfg.Auditor == nil {
		cfg.Auditor = tokenbroker.AuditorFunc(func(tokenbroker.AuditEvent) {})
	}
	if cfg.Tracer == nil {
		cfg.Tracer = noopTracer
	}
	cfg.Metrics.knownProviders(cfg.Providers)
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Coordinator{cfg: cfg, log: log.With("component", "refresh", "owner", cfg.Owner), inflight: map[string]*flight{}}
	if cfg.Changes != nil && cfg.CacheTTL > 0 {
		if cfg.CacheMaxEntries <= 0 {
			cfg.CacheMaxEntries = DefaultCacheMaxEntries
		}
		if cfg.CacheMaxBytes <= 0 {
			cfg.CacheMaxBytes = DefaultCacheMaxBytes
		}
		c.cache = newTokenCache(cfg.CacheTTL, cfg.CacheMaxEntries, cfg.CacheMaxBytes)
		c.stopChanges = cfg.Changes.OnChange(c.cache.invalidate)
	}
	return c, nil
}

// Close unregisters the coordinator from the store's change feed, refuses
// new flights and waits for the flights under way: a refresh the provider
// has answered must be committed before the store closes, or its rotated
// refresh token is lost (I2). Each flight is bounded (the provider
// timeout, then the commit's retry budget). Call it after the callers have
// stopped (the HTTP server is shut down) and before closing the store.
func (c *Coordinator) Close() {
	if c.stopChanges != nil {
		c.stopChanges()
	}
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.flights.Wait()
}

// Owner returns the lease owner id of this coordinator.
func (c *Coordinator) Owner() string { return c.cfg.Owner }

// Stats returns a snapshot of the counters.
func (c *Coordinator) Stats() Stats {
	s := &c.stats
	return Stats{Waits: s.waits.Load(), Takeovers: s.takeovers.Load(), LostRefreshes: s.lostRefreshes.Load(),
		LostCommits: s.lostCommits.Load(), CommitRetries: s.commitRetries.Load()}
}

// window is how long l's token must stay valid to be served without a
// refresh: the provider's refresh-ahead window, capped at half the token's
// lifetime (a window as long as the lifetime would refresh on every call),
// and at least minValid.
func window(l *tokenbroker.Link, p tokenbroker.Provider, minValid time.Duration) time.Duration {
	w := p.RefreshAhead()
	if lt := l.Lifetime(); lt > 0 {
		w = min(w, lt/2)
	}
	return max(w, minValid)
}

// checkMinValid refuses a minValid that no token of this provider can
// satisfy, before anything is sent: a fresh token lives about l's lifetime.
func checkMinValid(l *tokenbroker.Link, minValid time.Duration) error {
	if lt := l.Lifetime(); lt > 0 && minValid >= lt {
		return tokenbroker.Errorf(tokenbroker.EINVALID,
			"min_valid %s is not shorter than the lifetime of this provider's access tokens (about %s); no refresh can satisfy it",
			minValid, lt.Round(time.Second))
	}
	return nil
}

// Token implements [tokenbroker.TokenService] (docs/design.md steps 1-7).
func (c *Coordinator) Token(ctx context.Context, providerID, userID string, minValid time.Duration) (*tokenbroker.Token, error) {
	if minValid < 0 {
		return nil, tokenbroker.Errorf(tokenbroker.EINVALID, "min_valid must not be negative")
	}
	p, err := c.cfg.Providers.Provider(providerID)
	if err != nil {
		return nil, err
	}
	if l := c.cache.get(providerID, userID); l != nil && checkMinValid(l, minValid) == nil && l.Token.ValidFor(c.cfg.Clock.Now(), window(l, p, minValid)) {
		return tokenOut(l), nil
	}
	// Each pass reads the link and, when needed, joins the link's one
	// flight of this replica. A pass ends with a token or a definite
	// error; a second pass happens only when the flight ended on a state
	// older or less fresh than this caller needs. A first pass whose
	// cached token cannot serve this caller joins the flight on the cached
	// copy instead of reading: the flight reads (see tokenCache.spent).
	spent := c.cache.spent(providerID, userID, c.cfg.Clock.Now(), minValid)
	for pass := 0; ; pass++ {
		// Step 1: the fast path reads and returns, no lock, no write.
		l, version, err := c.readLink(ctx, providerID, userID, pass == 0, spent)
		if err != nil {
			return nil, c.callerErr(ctx, err)
		}
		if l.State == tokenbroker.LinkReauthRequired {
			return nil, reauthErr(l)
		}
		if err := checkMinValid(l, minValid); err != nil {
			return nil, err
		}
		now := c.cfg.Clock.Now()
		if l.Token.ValidFor(now, window(l, p, minValid)) {
			c.cache.put(l, version)
			return tokenOut(l), nil
		}
		if l.Token.RefreshToken == "" && l != spent {
			// Nothing to refresh with: a usable token is still served, an
			// unusable one means the user must connect again.
			if l.Token.ValidFor(now, minValid) {
				return tokenOut(l), nil
			}
			return nil, &tokenbroker.ReauthRequiredError{UserID: userID, ProviderID: providerID,
				Code: tokenbroker.ReasonNoRefreshToken, Reason: "access token expired and the link has no refresh token"}
		}
		if pass >= 2 {
			// Two flights ended on states older than this caller read:
			// the link keeps changing under it (reconnects, deletions).
			return nil, &tokenbroker.ProviderUnavailableError{ProviderID: providerID, RetryAfter: time.Second,
				Cause: errors.New("the link changed under two refresh attempts")}
		}

		// Step 3: one flight per link and replica; the others share it.
		res, err := c.fly(ctx, p, l, minValid, time.Time{})
		switch {
		case err == nil:
		case errors.Is(err, tokenbroker.ErrReauthRequired):
			return nil, err
		case ctx.Err() != nil:
			return c.onCallerDone(ctx, l, minValid)
		default:
			// The provider or the database failed, or the link backs
			// off: a still-valid token is served meanwhile (step 7).
			if l.Token.ValidFor(c.cfg.Clock.Now(), minValid) {
				return tokenOut(l), nil
			}
			return nil, err
		}
		if res.Token.ValidFor(c.cfg.Clock.Now(), minValid) {
			return tokenOut(res), nil
		}
		if res.Generation > l.Generation && l != spent {
			// A token fresh from the provider that does not last
			// minValid: another refresh would buy the same.
			if minValid == 0 {
				return nil, &tokenbroker.ProviderUnavailableError{ProviderID: providerID, RetryAfter: time.Second,
					Cause: errors.New("the provider's fresh token expired before it could be handed out")}
			}
			return nil, tokenbroker.Errorf(tokenbroker.EINVALID,
				"the provider's fresh token is valid for less than min_valid %s", minValid)
		}
	}
}

// callerErr keeps a caller that left from being reported as a store
// failure.
func (c *Coordinator) callerErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// onCallerDone answers a caller whose context ended while a flight was
// under way. The flight itself goes on (I2).
func (c *Coordinator) onCallerDone(ctx context.Context, l *tokenbroker.Link, minValid time.Duration) (*tokenbroker.Token, error) {
	if l.Token.ValidFor(c.cfg.Clock.Now(), minValid) {
		return tokenOut(l), nil
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nil, &tokenbroker.ProviderUnavailableError{ProviderID: l.ProviderID, RetryAfter: time.Second,
			Cause: errors.New("the refresh did not finish within the caller's deadline")}
	}
	return nil, ctx.Err()
}

// flight is the one refresh attempt of a link under way in this replica.
type flight struct {
	done    chan struct{}
	waiting chan struct{} // closed once the flight waits for another holder
	link    *tokenbroker.Link
	err     error

	// Guarded by Coordinator.mu.
	callers    int
	need       time.Duration // the largest minValid among its callers
	before     time.Time     // refresh tokens obtained before this (keep-alive; see fresh)
	cancelWait context.CancelFunc
	waitOnce   sync.Once
}

// fly runs or joins the flight for link l. Callers wait with their own
// context; the flight runs on a context detached from every caller, so the
// first caller giving up never abandons a refresh under way (I2, I5). While
// the flight only waits for another replica's holder, it stops when its
// last caller has left.
func (c *Coordinator) fly(ctx context.Context, p tokenbroker.Provider, l *tokenbroker.Link, minValid time.Duration, before time.Time) (*tokenbroker.Link, error) {
	key := l.ProviderID + "\x00" + l.UserID
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, &tokenbroker.StoreUnavailableError{Op: "refresh", Err: errors.New("the coordinator is shutting down")}
	}
	f := c.inflight[key]
	if f == nil {
		wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight{done: make(chan struct{}), waiting: make(chan struct{}), cancelWait: cancel}
		c.inflight[key] = f
		// Added under mu before the goroutine starts, so Close, which sets
		// closed under mu, waits for it (I2).
		c.flights.Add(1)
		go c.run(wctx, key, f, p, l)
	}
	f.callers++
	f.need = max(f.need, minValid)
	if before.After(f.before) {
		f.before = before
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if f.callers--; f.callers == 0 {
			// Nobody waits any more: a flight that only waits for another
			// replica stops (a holder's own work is on another context).
			f.cancelWait()
			if c.inflight[key] == f {
				delete(c.inflight, key)
			}
		}
		c.mu.Unlock()
	}()

	waiting := f.waiting
	for {
		select {
		case <-f.done:
			return f.link, f.err
		case <-waiting:
			// Step 2: another replica refreshes; a caller whose token is
			// still valid does not wait for it.
			if l.Token.ValidFor(c.cfg.Clock.Now(), minValid) {
				return l, nil
			}
			waiting = nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (c *Coordinator) run(ctx context.Context, key string, f *flight, p tokenbroker.Provider, l *tokenbroker.Link) {
	defer c.flights.Done()
	defer f.cancelWait()
	ctx, span := c.span(ctx, spanFlight, l)
	link, err := c.flight(ctx, f, p, l)
	endSpan(span, err)
	c.mu.Lock()
	if c.inflight[key] == f {
		delete(c.inflight, key)
	}
	c.mu.Unlock()
	f.link, f.err = link, err
	close(f.done)
}

func (c *Coordinator) need(f *flight) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return f.need
}

// flight is steps 2-6 for one link on this replica. It returns the link
// with a token fresh enough for its callers, or a definite error: the
// grant is broken, the provider is unavailable or misconfigured (with when
// to come back), or the database failed.
func (c *Coordinator) flight(ctx context.Context, f *flight, p tokenbroker.Provider, l0 *tokenbroker.Link) (*tokenbroker.Link, error) {
	st := c.cfg.Store
	// Subscribe before the first read, so a commit between the read and a
	// lost acquisition cannot be missed (I5).
	sub, cancelSub := c.cfg.Signaler.Subscribe(l0.ID)
	subID := l0.ID
	defer func() { cancelSub() }()

	for {
		l, err := st.GetLink(ctx, l0.UserID, l0.ProviderID)
		if err != nil {
			return nil, err
		}
		if l.ID != subID {
			// The link was deleted and connected again meanwhile.
			cancelSub()
			sub, cancelSub = c.cfg.Signaler.Subscribe(l.ID)
			subID = l.ID
		}
		if l.State == tokenbroker.LinkReauthRequired {
			return nil, reauthErr(l)
		}
		if c.fresh(f, p, l) {
			return l, nil // refreshed meanwhile
		}

		// The provider's shared health: an open circuit or a
		// misconfiguration answers at once; when its time is up, one call
		// across all replicas probes it.
		health, err := st.GetProviderHealth(ctx, p.ID())
		if err != nil {
			return nil, err
		}
		if health.Open() {
			return nil, c.healthErr(health, health.OpenUntil.Sub(health.Now))
		}

		// Step 4: one conditional statement judged on the database clock.
		// The lease is what keeps a second provider call for the same
		// generation from happening on any replica (I1, I2).
		asked := c.cfg.Clock.Now()
		lctx, lspan := c.span(ctx, spanLease, l)
		g, err := st.AcquireLease(lctx, tokenbroker.LeaseRequest{
			LinkID: l.ID, Generation: l.Generation, Owner: c.cfg.Owner, TTL: c.cfg.LeaseTTL, Grace: c.cfg.Grace,
		})
		endLeaseSpan(lspan, g, err)
		if err != nil {
			return nil, err
		}
		c.cfg.Metrics.lease(g)
		if g.Won {
			hctx := context.WithoutCancel(ctx)
			if !health.OpenUntil.IsZero() {
				// The circuit's time is up: this attempt may probe it if
				// no other replica does.
				won, err := st.AcquireProviderProbe(hctx, p.ID(), c.cfg.Owner, c.cfg.ProviderTimeout+c.cfg.LeaseTTL)
				if err != nil || !won {
					if _, rerr := st.ReleaseLease(hctx, g.Lease, tokenbroker.Release{}, tokenbroker.Record{}); rerr != nil {
						c.log.Warn("release lease failed", "user", l.UserID, "provider", l.ProviderID, "err", rerr)
					}
					if err != nil {
						return nil, err
					}
					return nil, c.healthErr(health, time.Second)
				}
			}
			if c.cfg.Clock.Now().Sub(asked) >= c.cfg.LeaseTTL {
				// The lease may have expired and been taken over before
				// this process could use it (it was paused, starved, or
				// the answer was that slow), and the successor may have
				// spent the refresh token already: it is given back
				// unused and the link read again (I1, I2).
				c.log.Warn("refresh lease won too late to be sure it is still ours; not sending",
					"user", l.UserID, "provider", l.ProviderID, "elapsed", c.cfg.Clock.Now().Sub(asked).Round(time.Millisecond))
				if _, err := st.ReleaseLease(hctx, g.Lease, tokenbroker.Release{}, tokenbroker.Record{}); err != nil {
					c.log.Warn("release lease failed", "user", l.UserID, "provider", l.ProviderID, "err", err)
				}
				continue
			}
			// We hold the lease of generation l.Generation: its refresh
			// token is the current one and nobody else may send it (I1).
			return c.refreshHeld(hctx, p, l, g, health)
		}
		switch {
		case g.Generation != l.Generation || !g.State.Refreshable():
			continue // refreshed, reconnected or marked meanwhile: read again
		case g.LeaseOwner == "" && g.NextAttemptAt.After(g.Now):
			// The link backs off after a failed attempt; every replica
			// honours it, and callers get the real Retry-After at once.
			return nil, &tokenbroker.ProviderUnavailableError{ProviderID: l.ProviderID,
				RetryAfter: retryAfter(g.NextAttemptAt.Sub(g.Now)), Cause: lastError(l)}
		case g.LeaseOwner == "":
			continue // released meanwhile
		}
		// Another holder (or a holder that may be dead) refreshes: wait
		// for its signal, a poll tick, or the end of its lease or grace.
		f.waitOnce.Do(func() { close(f.waiting) })
		c.stats.waits.Add(1)
		c.cfg.Metrics.wait()
		_, wspan := c.span(ctx, spanWait, l)
		err = c.wait(ctx, sub, g)
		endSpan(wspan, err)
		if err != nil {
			return nil, err
		}
	}
}

// wait blocks until the link's signal, a poll tick, or the lease's
// expiry (or the end of an expired lease's grace), whichever comes first,
// measured from the database's clock as the grant reported it. A dead
// holder therefore delays waiters by about its lease's rest plus the
// grace (I5).
func (c *Coordinator) wait(ctx context.Context, sub <-chan struct{}, g *tokenbroker.LeaseGrant) error {
	d := c.cfg.PollInterval
	const slack = 10 * time.Millisecond
	switch {
	case g.LeaseUntil.After(g.Now):
		d = min(d, g.LeaseUntil.Sub(g.Now)+slack)
	case !g.GraceUntil.IsZero():
		d = min(d, max(g.GraceUntil.Sub(g.Now), 0)+slack)
	}
	select {
	case <-sub:
		c.cfg.Metrics.wakeup(true)
	case <-c.cfg.Clock.After(d):
		c.cfg.Metrics.wakeup(false)
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// refreshHeld calls the provider as the lease holder and ends the attempt:
// commit, mark, or release with its outcome (steps 4-7). ctx is detached
// from every caller. The lease is renewed until the attempt has ended.
func (c *Coordinator) refreshHeld(ctx context.Context, p tokenbroker.Provider, l *tokenbroker.Link, g *tokenbroker.LeaseGrant, health *tokenbroker.ProviderHealth) (*tokenbroker.Link, error) {
	if g.PreviousOwner != "" {
		c.stats.takeovers.Add(1)
		c.log.Warn("took over a refresh lease its holder did not release",
			"user", l.UserID, "provider", l.ProviderID, "previous_owner", g.PreviousOwner, "generation", l.Generation)
	}
	renewal := c.renew(ctx, g.Lease)
	defer renewal.stop()

	// The provider call runs on the detached context with its own timeout;
	// the renewed lease covers it however long it takes (I1). No database
	// connection is held while it runs (I6).
	pctx, cancel := c.cfg.Clock.WithTimeout(ctx, c.cfg.ProviderTimeout)
	pctx, pspan := c.span(pctx, spanProviderCall, l)
	c.cfg.Metrics.providerCall(l.ProviderID)
	start := c.cfg.Clock.Now()
	tok, perr := p.Refresh(pctx, l.Token.RefreshToken)
	endSpan(pspan, perr)
	cancel()
	c.cfg.Metrics.providerLatency(l.ProviderID, c.cfg.Clock.Now().Sub(start))

	if perr == nil {
		return c.onRefreshed(ctx, renewal, l, g, tok, health)
	}
	var pe *tokenbroker.ProviderError
	if !errors.As(perr, &pe) {
		pe = &tokenbroker.ProviderError{ProviderID: l.ProviderID, Class: tokenbroker.FailureUncertain, Err: perr}
	}
	c.cfg.Metrics.failed(l.ProviderID, string(pe.Class))
	switch pe.Class {
	case tokenbroker.FailureRejected:
		return c.onRejected(ctx, l, g, pe)
	case tokenbroker.FailureClient:
		return c.onClientError(ctx, l, g, pe, health)
	case tokenbroker.FailureNotProcessed:
		return c.onTransient(ctx, l, g, pe)
	default:
		pe.Class = tokenbroker.FailureUncertain
		return c.onTransient(ctx, l, g, pe)
	}
}

// onRefreshed commits the provider's answer (step 5, I3). The answer is the
// only copy of the rotated refresh token: a database error does not drop
// it, the commit is retried while the renewed lease keeps it ours (I2).
func (c *Coordinator) onRefreshed(ctx context.Context, renewal *renewal, l *tokenbroker.Link, g *tokenbroker.LeaseGrant, tok *tokenbroker.Token, health *tokenbroker.ProviderHealth) (*tokenbroker.Link, error) {
	if tok.RefreshToken == "" {
		tok.RefreshToken = l.Token.RefreshToken // the provider does not rotate
	}
	if tok.Scopes == nil {
		tok.Scopes = l.Token.Scopes // RFC 6749 §5.1: the grant's scope is unchanged
	}
	next := *l
	next.Token = *tok
	next.Suspect = c.nextSuspect(l, g)
	rec := tokenbroker.Record{Audit: []tokenbroker.AuditEvent{c.event(l, tokenbroker.AuditLinkRefresh, "ok", recoveredDetail(l))}}
	if g.State == tokenbroker.LinkDegraded {
		// Our lease kept the state from changing since we took it: this
		// commit is the recovery, recorded once.
		rec.Events = append(rec.Events, tokenbroker.LinkEvent(tokenbroker.EventLinkRecovered, l, string(tokenbroker.LinkDegraded), recoveredDetail(l)))
	}
	cctx, cspan := c.span(ctx, spanCommit, l)
	committed, err := c.commit(cctx, g.Lease, &next, rec)
	cspan.SetAttributes(attribute.Bool("tokenbroker.committed", committed))
	endSpan(cspan, err)
	renewal.stop()
	if err != nil || !committed {
		// The provider rotated the refresh token and the answer cannot be
		// committed: this is a lost refresh, reported as such (I2).
		reason := "lease_lost"
		if err != nil {
			reason = "commit_failed"
		}
		c.stats.lostCommits.Add(1)
		c.cfg.Metrics.lost(reason)
		c.cfg.Metrics.refreshOutcome(l.ProviderID, "lost")
		c.log.Error("lost refresh: the provider's answer could not be committed and is discarded",
			"user", l.UserID, "provider", l.ProviderID, "generation", l.Generation, "reason", reason, "err", err)
		ev := c.event(l, tokenbroker.AuditLostRefresh, reason,
			"the provider's answer could not be committed: "+map[bool]string{true: "the database failed until the retry budget ran out", false: "the lease was taken over or the link replaced"}[err != nil])
		ev.Time = c.cfg.Clock.Now()
		c.cfg.Auditor.Record(ev)
		if err != nil {
			return nil, err
		}
		cur, err := c.cfg.Store.GetLink(ctx, l.UserID, l.ProviderID)
		if err != nil {
			return nil, err
		}
		return settled(cur)
	}
	c.cfg.Metrics.refreshed(l.ProviderID)
	if l.Failures > 0 {
		c.log.Info("link recovered: refreshed after failed attempts", "user", l.UserID, "provider", l.ProviderID, "failures", l.Failures)
	}
	if health.Troubled() {
		c.recordSuccess(ctx, l.ProviderID)
	}
	next.Generation = l.Generation + 1
	next.LeaseOwner, next.LeaseUntil = "", time.Time{}
	next.Attempts, next.Failures, next.LastError = 0, 0, ""
	next.FailingSince, next.NextAttemptAt = time.Time{}, time.Time{}
	next.State = tokenbroker.LinkActive
	next.RefreshedAt = c.cfg.Clock.Now()
	return &next, nil
}

// nextSuspect is what the generation this refresh starts may suffer from
// the one it ends (I2's attribution, docs/design.md "The two loss
// windows"). A generation whose lease was taken over (suspect holder_died)
// may still have its former holder's request on its way: a provider that
// processes it after ours spends the new refresh token, and revokes the
// grant, so the next generation starts suspect previous_holder. So does
// the one after, while such a request may still be on its way (a provider
// timeout and a lease after the suspicion began, which the carrying
// generation's refreshed_at bounds from below).
func (c *Coordinator) nextSuspect(l *tokenbroker.Link, g *tokenbroker.LeaseGrant) string {
	switch {
	case g.Suspect == tokenbroker.LossHolderDied:
		return tokenbroker.LossPreviousHolder
	case g.Suspect == tokenbroker.LossPreviousHolder && g.Now.Sub(l.RefreshedAt) < c.cfg.ProviderTimeout+c.cfg.LeaseTTL:
		return tokenbroker.LossPreviousHolder
	}
	return ""
}

func recoveredDetail(l *tokenbroker.Link) string {
	if l.Failures == 0 {
		return ""
	}
	return fmt.Sprintf("recovered after %d failed attempts", l.Failures)
}

// commit writes a refreshed token by the fenced compare-and-swap (step 5,
// I3), retrying database errors every CommitRetryInterval at most, for
// CommitRetryFor. A commit on our own lease epoch is accepted even after
// the lease expired, as long as nobody took it over: the grace a successor
// must wait exceeds the retry interval, so a live holder whose database
// comes back commits first (I2).
func (c *Coordinator) commit(ctx context.Context, lease tokenbroker.Lease, next *tokenbroker.Link, rec tokenbroker.Record) (bool, error) {
	deadline := c.cfg.Clock.Now().Add(c.cfg.CommitRetryFor)
	for attempt := 0; ; attempt++ {
		ok, err := c.cfg.Store.CommitRefresh(ctx, lease, next, rec)
		if err == nil {
			if attempt > 0 {
				c.log.Info("commit of a refreshed token succeeded after retries", "user", next.UserID, "provider", next.ProviderID, "retries", attempt)
			}
			return ok, nil
		}
		if !c.cfg.Clock.Now().Before(deadline) {
			return false, err
		}
		c.stats.commitRetries.Add(1)
		if attempt == 0 {
			// One line per episode; the outcome is logged when it ends.
			c.log.Warn("commit of a refreshed token failed; retrying with the token kept in memory",
				"user", next.UserID, "provider", next.ProviderID, "err", err)
		}
		d := backoff.Policy{Base: 20 * time.Millisecond, Max: c.cfg.CommitRetryInterval, Rand: c.draw}.Delay(attempt)
		<-c.cfg.Clock.After(d)
	}
}

// onRejected handles a provider that rejected the refresh token (step 6).
// It reads the link again: a moved generation means another writer
// refreshed, and theirs is returned (I4). Otherwise the link is marked
// reauth_required, fenced by our lease: as a lost refresh when an earlier
// attempt of this generation may already have spent the token (the
// suspect the store keeps on the row, whoever sees it), else as revoked.
func (c *Coordinator) onRejected(ctx context.Context, l *tokenbroker.Link, g *tokenbroker.LeaseGrant, pe *tokenbroker.ProviderError) (*tokenbroker.Link, error) {
	cur, err := c.cfg.Store.GetLink(ctx, l.UserID, l.ProviderID)
	if err != nil {
		return nil, err
	}
	if cur.Generation != l.Generation || !cur.State.Refreshable() {
		c.log.Info("provider rejected a refresh token already replaced by another writer; using the newer state",
			"user", l.UserID, "provider", l.ProviderID, "generation", cur.Generation)
		return settled(cur)
	}
	r := tokenbroker.Reauth{Reason: tokenbroker.ReasonRevoked, Detail: pe.Reason()}
	if pe.Code == "invalid_scope" {
		r.Reason = tokenbroker.ReasonScopesChanged
	}
	var rec tokenbroker.Record
	if g.Suspect != "" {
		// The two loss windows of docs/design.md: an earlier attempt of
		// this generation may have been processed, so this rejection does
		// not mean the user revoked anything (I2's exception).
		cause := lossCause(g.Suspect)
		c.stats.lostRefreshes.Add(1)
		c.cfg.Metrics.lost(cause)
		r.Reason = tokenbroker.ReasonLostRefresh
		r.Detail = tokenbroker.Truncate(fmt.Sprintf("lost refresh (%s): %s, and the provider then rejected the refresh token (%s)",
			cause, lossExplanation(g.Suspect), pe.Reason()), 300)
		c.log.Error("lost refresh: the provider rejected a refresh token that an earlier attempt may already have spent",
			"user", l.UserID, "provider", l.ProviderID, "cause", cause, "suspect", g.Suspect, "attempt", g.Attempt,
			"generation", l.Generation, "provider_error", pe.Reason())
		rec.Audit = append(rec.Audit, c.event(l, tokenbroker.AuditLostRefresh, cause, r.Detail))
	}
	rec.Audit = append(rec.Audit, c.event(l, tokenbroker.AuditLinkBroken, string(r.Reason), r.Detail))
	rec.Events = append(rec.Events, tokenbroker.LinkEvent(tokenbroker.EventLinkReauthRequired, l, string(r.Reason), r.Detail))
	// Marked with our lease: a token written meanwhile is never
	// overwritten or hidden (I3, I4).
	marked, err := c.cfg.Store.MarkReauthRequired(ctx, g.Lease, r, rec)
	if err != nil {
		return nil, err
	}
	if !marked {
		cur, err := c.cfg.Store.GetLink(ctx, l.UserID, l.ProviderID)
		if err != nil {
			return nil, err
		}
		return settled(cur)
	}
	if g.Suspect == "" {
		c.log.Warn("link needs re-authentication: the provider rejected its grant",
			"user", l.UserID, "provider", l.ProviderID, "reason", r.Detail)
	}
	return nil, &tokenbroker.ReauthRequiredError{UserID: l.UserID, ProviderID: l.ProviderID, Code: r.Reason, Reason: r.Detail}
}

// lossCause is the loss window a suspect stands for (the reason of
// tokenbroker_refresh_lost_total): a previous holder's late request is the
// holder_died window.
func lossCause(suspect string) string {
	if suspect == tokenbroker.LossPreviousHolder {
		return tokenbroker.LossHolderDied
	}
	return suspect
}

func lossExplanation(suspect string) string {
	switch suspect {
	case tokenbroker.LossHolderDied:
		return "a previous lease holder stopped while refreshing, possibly after the provider's answer"
	case tokenbroker.LossPreviousHolder:
		return "the previous refresh took over from a lease holder that stopped while its request may still have been on its way, and the provider may have processed that request after its successor's"
	}
	return "an earlier attempt's answer was lost in transit (a timeout or reset after the request was sent)"
}

// onClientError handles a provider that refused this service's client: the
// provider is marked misconfigured for every replica, the link keeps its
// state and tokens (the grant was not processed), and callers get 503
// provider_misconfigured until a probe succeeds.
func (c *Coordinator) onClientError(ctx context.Context, l *tokenbroker.Link, g *tokenbroker.LeaseGrant, pe *tokenbroker.ProviderError, health *tokenbroker.ProviderHealth) (*tokenbroker.Link, error) {
	if _, err := c.cfg.Store.ReleaseLease(ctx, g.Lease, tokenbroker.Release{}, tokenbroker.Record{}); err != nil {
		c.log.Warn("release lease failed", "user", l.UserID, "provider", l.ProviderID, "err", err)
	}
	after, _, err := c.cfg.Store.RecordProviderFailure(ctx, l.ProviderID, tokenbroker.ProviderFailure{
		Misconfigured: pe.Reason(), OpenFor: c.cfg.MisconfiguredProbe, MaxOpenFor: c.cfg.MisconfiguredProbe, RetryAfter: pe.RetryAfter,
		// Written by the one failure, across replicas, that marks it.
		Record: tokenbroker.Record{
			Audit: []tokenbroker.AuditEvent{{Actor: c.cfg.Owner, Action: tokenbroker.AuditProviderMisconfigured,
				ProviderID: l.ProviderID, Outcome: "misconfigured", Detail: pe.Reason()}},
			Events: []tokenbroker.Event{{Type: tokenbroker.EventProviderMisconfigured, ProviderID: l.ProviderID,
				Reason: pe.Code, Detail: pe.Reason()}},
		},
	})
	if err != nil {
		return nil, err
	}
	if health.Misconfigured == "" {
		// One line per state change: a failed probe of a provider already
		// known to be misconfigured says nothing new.
		c.cfg.Metrics.misconfigured(l.ProviderID, true)
		c.log.Error("provider misconfigured: it refused this service's client credentials; no link is marked, refreshes wait for a probe to succeed",
			"provider", l.ProviderID, "reason", pe.Reason(), "probe_every", c.cfg.MisconfiguredProbe)
	}
	return nil, c.healthErr(after, after.OpenUntil.Sub(after.Now))
}

// onTransient handles a failure of the provider or the network (step 7):
// the lease is released with the attempt's outcome, which sets the link's
// backoff for every replica (longer when the provider may have processed
// the refresh token) and counts the failure against the provider's
// circuit. One log line and audit event per transition to failing, not per
// attempt.
func (c *Coordinator) onTransient(ctx context.Context, l *tokenbroker.Link, g *tokenbroker.LeaseGrant, pe *tokenbroker.ProviderError) (*tokenbroker.Link, error) {
	backoff := c.linkBackoff(pe.Class, l.Failures+1, pe.RetryAfter)
	var rec tokenbroker.Record
	if l.Failures == 0 {
		c.log.Warn("provider refresh failed; the link backs off and is retried",
			"user", l.UserID, "provider", l.ProviderID, "class", pe.Class, "backoff", backoff, "err", pe)
		rec.Audit = append(rec.Audit, c.event(l, tokenbroker.AuditRefreshFailed, string(pe.Class), pe.Reason()))
	} else {
		c.log.Debug("provider refresh failed again", "user", l.UserID, "provider", l.ProviderID,
			"class", pe.Class, "failures", l.Failures+1, "backoff", backoff, "err", pe)
	}
	degrade := c.degrades(l, g, pe, &rec)
	if _, err := c.cfg.Store.ReleaseLease(ctx, g.Lease, tokenbroker.Release{Class: pe.Class, Backoff: backoff, Error: pe.Reason(), Degrade: degrade}, rec); err != nil {
		c.log.Warn("release lease failed", "user", l.UserID, "provider", l.ProviderID, "err", err)
	}
	after, opened, err := c.cfg.Store.RecordProviderFailure(ctx, l.ProviderID, tokenbroker.ProviderFailure{
		Threshold: c.cfg.CircuitThreshold, OpenFor: c.cfg.CircuitOpenFor, MaxOpenFor: c.cfg.CircuitOpenForMax, RetryAfter: pe.RetryAfter,
	})
	if err != nil {
		c.log.Warn("record provider failure", "provider", l.ProviderID, "err", err)
	} else if opened {
		c.cfg.Metrics.circuitOpened(l.ProviderID)
		c.log.Warn("provider circuit opened: refreshes wait, one call probes it when the time is up",
			"provider", l.ProviderID, "failures", after.Failures, "open_for", after.OpenUntil.Sub(after.Now).Round(time.Millisecond))
	}
	return nil, &tokenbroker.ProviderUnavailableError{ProviderID: l.ProviderID, RetryAfter: retryAfter(backoff), Cause: pe}
}

// recordSuccess clears the provider's failures and says so when it was
// open or misconfigured.
func (c *Coordinator) recordSuccess(ctx context.Context, providerID string) {
	// Written by the one success, across replicas, that clears a
	// misconfiguration.
	rec := tokenbroker.Record{
		Audit: []tokenbroker.AuditEvent{{Actor: c.cfg.Owner, Action: tokenbroker.AuditProviderRecovered,
			ProviderID: providerID, Outcome: "ok", Detail: "accepts this service's client again"}},
		Events: []tokenbroker.Event{{Type: tokenbroker.EventProviderRecovered, ProviderID: providerID,
			Detail: "accepts this service's client again"}},
	}
	before, err := c.cfg.Store.RecordProviderSuccess(ctx, providerID, rec)
	if err != nil {
		c.log.Warn("record provider success", "provider", providerID, "err", err)
		return
	}
	if before == nil {
		return
	}
	if before.Misconfigured != "" {
		c.cfg.Metrics.misconfigured(providerID, false)
		c.log.Info("provider recovered: it accepts this service's client again", "provider", providerID, "was", before.Misconfigured)
	} else if before.Opens > 0 {
		c.log.Info("provider recovered: its circuit is closed", "provider", providerID, "failures", before.Failures)
	}
}

// healthErr is the error of a provider whose circuit is open or that
// refuses the client.
func (c *Coordinator) healthErr(h *tokenbroker.ProviderHealth, wait time.Duration) error {
	if h.Misconfigured != "" {
		return &tokenbroker.ProviderMisconfiguredError{ProviderID: h.ProviderID, Reason: h.Misconfigured, RetryAfter: retryAfter(wait)}
	}
	return &tokenbroker.ProviderUnavailableError{ProviderID: h.ProviderID, RetryAfter: retryAfter(wait),
		Cause: fmt.Errorf("the provider failed %d times in a row; its circuit is open", h.Failures)}
}

// linkBackoff is the link's wait before its next attempt after the
// failures-th consecutive failure of class: doubling from the class's
// base, capped, with jitter in [d/2, d) (internal/backoff), never under
// retryAfter.
func (c *Coordinator) linkBackoff(class tokenbroker.FailureClass, failures int, retryAfter time.Duration) time.Duration {
	p := backoff.Policy{Base: c.cfg.RetryBackoff, Max: c.cfg.RetryBackoffMax, Rand: c.draw}
	if class == tokenbroker.FailureUncertain {
		p.Base, p.Max = c.cfg.UncertainBackoff, c.cfg.UncertainBackoffMax
	}
	return max(p.Delay(failures-1), retryAfter)
}

// draw returns cfg.Rand's next number, which it may draw on one goroutine
// at a time.
func (c *Coordinator) draw() float64 {
	c.randMu.Lock()
	defer c.randMu.Unlock()
	return c.cfg.Rand()
}

// retryAfter rounds a wait up to whole seconds, at least one, as
// Retry-After carries it.
func retryAfter(d time.Duration) time.Duration {
	if d <= time.Second {
		return time.Second
	}
	return (d + time.Second - 1).Truncate(time.Second)
}

func lastError(l *tokenbroker.Link) error {
	if l.LastError == "" {
		return errors.New("the link backs off after a failed refresh")
	}
	return errors.New("the link backs off after a failed refresh: " + l.LastError)
}

// renewal is the heartbeat that keeps a holder's lease alive while its
// provider call and commit last (I1: a live holder's lease never expires
// while the database answers).
type renewal struct {
	stopOnce sync.Once
	done     chan struct{}
	finished chan struct{}
	lost     atomic.Bool
}

func (c *Coordinator) renew(ctx context.Context, lease tokenbroker.Lease) *renewal {
	r := &renewal{done: make(chan struct{}), finished: make(chan struct{})}
	go func() {
		defer close(r.finished)
		for {
			select {
			case <-r.done:
				return
			case <-c.cfg.Clock.After(c.cfg.RenewEvery):
			}
			rctx, cancel := c.cfg.Clock.WithTimeout(ctx, c.cfg.RenewEvery)
			ok, err := c.cfg.Store.RenewLease(rctx, lease, c.cfg.LeaseTTL)
			cancel()
			switch {
			case err != nil:
				// Keep trying: if the database comes back before another
				// replica's grace ends, the lease is still ours.
				c.cfg.Metrics.renewal("error")
				c.log.Debug("lease renewal failed", "link", lease.LinkID, "err", err)
			case !ok:
				c.cfg.Metrics.renewal("lost")
				r.lost.Store(true)
				c.log.Warn("refresh lease lost: another replica took it over or the link changed", "link", lease.LinkID)
				return
			default:
				c.cfg.Metrics.renewal("ok")
			}
		}
	}()
	return r
}

// stop ends the heartbeat and waits for it.
func (r *renewal) stop() {
	r.stopOnce.Do(func() { close(r.done) })
	<-r.finished
}

// settled is the answer of a link another writer settled: its
// reauth_required error, or the link with its token.
func settled(l *tokenbroker.Link) (*tokenbroker.Link, error) {
	if l.State == tokenbroker.LinkReauthRequired {
		return nil, reauthErr(l)
	}
	return l, nil
}

func reauthErr(l *tokenbroker.Link) error {
	return &tokenbroker.ReauthRequiredError{UserID: l.UserID, ProviderID: l.ProviderID, Code: l.ReauthReason, Reason: l.FailureReason}
}

// event is an audit event of link l. Its time is left to the database's
// clock when it is written with a state change.
func (c *Coordinator) event(l *tokenbroker.Link, action, outcome, detail string) tokenbroker.AuditEvent {
	return tokenbroker.AuditEvent{
		Actor: c.cfg.Owner, Action: action,
		UserID: l.UserID, ProviderID: l.ProviderID, Outcome: outcome, Detail: detail,
	}
}

// tokenOut copies the caller-visible part of a link's token. The refresh
// token never leaves the coordinator.
func tokenOut(l *tokenbroker.Link) *tokenbroker.Token {
	t := l.Token
	t.RefreshToken = ""
	return &t
}
