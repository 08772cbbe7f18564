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

	"golang.org/x/sync/singleflight"

	"github.com/tokenbroker/tokenbroker"
)

// Defaults of [Config].
const (
	DefaultLeaseTTL     = 30 * time.Second
	DefaultPollInterval = 500 * time.Millisecond
	DefaultMaxBackoff   = 5 * time.Second
	DefaultBaseBackoff  = 100 * time.Millisecond
	// DefaultAttemptsWithoutDeadline bounds transient retries for a caller
	// whose context has no deadline.
	DefaultAttemptsWithoutDeadline = 3
)

// Config configures a [Coordinator]. Store, Signaler and Providers are
// required; every other field has a default.
type Config struct {
	Store     tokenbroker.Store
	Signaler  tokenbroker.Signaler
	Providers tokenbroker.Providers
	Auditor   tokenbroker.Auditor // nil: no audit events
	Logger    *slog.Logger        // nil: slog.Default()

	// Owner identifies this replica as a lease owner. It must be unique
	// among live replicas (default: a random id).
	Owner string
	// LeaseTTL is how long a refresh lease lasts (default 30s).
	LeaseTTL time.Duration
	// ProviderTimeout bounds one provider call; it must be well under
	// LeaseTTL so a live holder never outlives its lease (I1). Default
	// LeaseTTL/3.
	ProviderTimeout time.Duration
	// PollInterval is the fallback poll of a waiter for a missed signal
	// (default 500ms). A waiter never waits past the lease's expiry
	// without reading the link again.
	PollInterval time.Duration
	// BaseBackoff and MaxBackoff shape the jittered exponential backoff
	// after a transient provider failure.
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// CommitRetryFor bounds how long a refreshed token's commit is
	// retried on transient database errors (default LeaseTTL).
	CommitRetryFor time.Duration

	// Now is the clock that judges token expiry (default time.Now). Lease
	// expiry is judged by the database.
	Now func() time.Time
	// Rand draws backoff jitter in [0,1) (default math/rand/v2).
	Rand func() float64
	// Metrics, if set, receives counters (see [NewMetrics]).
	Metrics *Metrics

	// Changes, with CacheTTL > 0, enables the per-replica cache of fresh
	// tokens on the fast path (see tokenCache): the store's change feed
	// invalidates it. CacheTTL bounds an entry's age should notifications
	// be lost. Without Changes there is no cache.
	Changes  tokenbroker.ChangeFeed
	CacheTTL time.Duration

	// BeforeCommit, if set, runs after the provider answered and before the
	// commit. It exists for fault injection in tests (to stand for a
	// replica that dies in the window I2 cannot close).
	BeforeCommit func(ctx context.Context, l *tokenbroker.Link)
}

// Stats are counters of one coordinator that tests read; operators see the
// Prometheus metrics (see [NewMetrics]).
type Stats struct {
	Waits         int64 // waits for another holder's refresh
	LostRefreshes int64 // takeovers whose refresh the provider rejected (I2's window)
	LostCommits   int64 // refreshed tokens whose commit lost the CAS
	CommitRetries int64 // commits retried after a database error
}

// Coordinator implements [tokenbroker.TokenService] with the refresh
// protocol of DESIGN.md. It is safe for concurrent use; one per replica.
type Coordinator struct {
	cfg         Config
	log         *slog.Logger
	group       singleflight.Group
	cache       *tokenCache
	stopChanges func()
	// flights counts running flights, so Close can wait for a refresh the
	// provider may already have answered to be committed (I2).
	flights sync.WaitGroup

	randMu sync.Mutex

	stats struct {
		waits, lostRefreshes, lostCommits, commitRetries atomic.Int64
	}
}

var _ tokenbroker.TokenService = (*Coordinator)(nil)

// New returns a coordinator. It reports a configuration error for missing
// dependencies or a provider timeout not under the lease TTL.
func New(cfg Config) (*Coordinator, error) {
	if cfg.Store == nil || cfg.Signaler == nil || cfg.Providers == nil {
		return nil, errors.New("refresh: Store, Signaler and Providers are required")
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.ProviderTimeout <= 0 {
		cfg.ProviderTimeout = cfg.LeaseTTL / 3
	}
	if cfg.ProviderTimeout >= cfg.LeaseTTL {
		return nil, fmt.Errorf("refresh: provider timeout %s must be under the lease TTL %s", cfg.ProviderTimeout, cfg.LeaseTTL)
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.BaseBackoff <= 0 {
		cfg.BaseBackoff = DefaultBaseBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.CommitRetryFor <= 0 {
		cfg.CommitRetryFor = cfg.LeaseTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
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
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Coordinator{cfg: cfg, log: log.With("component", "refresh", "owner", cfg.Owner)}
	if cfg.Changes != nil && cfg.CacheTTL > 0 {
		c.cache = newTokenCache(cfg.CacheTTL)
		c.stopChanges = cfg.Changes.OnChange(c.cache.invalidate)
	}
	return c, nil
}

// Close unregisters the coordinator from the store's change feed and
// waits for the flights under way: each is bounded by its own timeout, and
// a refresh the provider has answered must be committed before the store
// closes, or its rotated refresh token is lost (I2). Call it after the
// callers have stopped (the HTTP server is shut down) and before closing
// the store.
func (c *Coordinator) Close() {
	if c.stopChanges != nil {
		c.stopChanges()
	}
	c.flights.Wait()
}

// Owner returns the lease owner id of this coordinator.
func (c *Coordinator) Owner() string { return c.cfg.Owner }

// Stats returns a snapshot of the counters.
func (c *Coordinator) Stats() Stats {
	s := &c.stats
	return Stats{Waits: s.waits.Load(), LostRefreshes: s.lostRefreshes.Load(),
		LostCommits: s.lostCommits.Load(), CommitRetries: s.commitRetries.Load()}
}

// flightResult is what one flight hands to every caller that shared it.
type flightResult struct {
	link *tokenbroker.Link
	// transient is set when the flight ended on a transient provider
	// failure; the caller backs off and tries again within its deadline.
	transient *tokenbroker.ProviderError
}

// Token implements [tokenbroker.TokenService] (DESIGN.md steps 1–7).
func (c *Coordinator) Token(ctx context.Context, providerID, userID string, minValid time.Duration) (*tokenbroker.Token, error) {
	if minValid < 0 {
		return nil, tokenbroker.Errorf(tokenbroker.EINVALID, "min_valid must not be negative")
	}
	p, err := c.cfg.Providers.Provider(providerID)
	if err != nil {
		return nil, err
	}
	window := max(p.RefreshAhead(), minValid)

	key := cacheKey(providerID, userID)
	if l := c.cache.get(key); l != nil && l.Token.ValidFor(c.cfg.Now(), window) {
		return tokenOut(l), nil
	}
	var lastTransient *tokenbroker.ProviderError
	for attempt := 0; ; attempt++ {
		// Step 1: the fast path reads and returns, no lock, no write.
		version := c.cache.version()
		l, err := c.cfg.Store.GetLink(ctx, userID, providerID)
		if err != nil {
			if ctx.Err() != nil && lastTransient != nil {
				return nil, unavailable(providerID, lastTransient, time.Second)
			}
			return nil, err
		}
		if l.State == tokenbroker.LinkReauthRequired {
			return nil, c.reauthErr(l)
		}
		now := c.cfg.Now()
		if l.Token.ValidFor(now, window) {
			c.cache.put(key, l, version)
			return tokenOut(l), nil
		}
		if l.Token.RefreshToken == "" {
			// Nothing to refresh with: a usable token is still served, an
			// unusable one means the user must connect again.
			if l.Token.ValidFor(now, minValid) {
				return tokenOut(l), nil
			}
			return nil, &tokenbroker.ReauthRequiredError{UserID: userID, ProviderID: providerID, Reason: "access token expired and the link has no refresh token"}
		}

		// Step 3: one flight per link and replica; the others share it.
		res, err := c.fly(ctx, p, l, window, minValid)
		if err != nil {
			if ctx.Err() != nil {
				return c.onCallerDone(ctx, l, minValid, lastTransient)
			}
			return nil, err
		}
		if res.link != nil {
			if res.link.Token.ValidFor(c.cfg.Now(), minValid) {
				return tokenOut(res.link), nil
			}
			if res.link.Generation > l.Generation {
				return nil, tokenbroker.Errorf(tokenbroker.EINVALID,
					"the provider's fresh token is valid for less than min_valid %s", minValid)
			}
			// An older state came back (a concurrent writer); read again.
			continue
		}

		// Step 7: transient failure. Serve a still-valid token meanwhile.
		lastTransient = res.transient
		if l.Token.ValidFor(c.cfg.Now(), minValid) {
			return tokenOut(l), nil
		}
		delay := c.backoff(attempt, res.transient.RetryAfter)
		deadline, hasDeadline := ctx.Deadline()
		// The deadline is wall-clock time; cfg.Now only judges token expiry.
		if (!hasDeadline && attempt+1 >= DefaultAttemptsWithoutDeadline) ||
			(hasDeadline && time.Until(deadline) < delay) {
			return nil, unavailable(providerID, res.transient, delay)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return c.onCallerDone(ctx, l, minValid, lastTransient)
		case <-t.C:
		}
	}
}

// onCallerDone answers a caller whose context ended while a flight was
// under way. The flight itself goes on, detached (I2).
func (c *Coordinator) onCallerDone(ctx context.Context, l *tokenbroker.Link, minValid time.Duration, last *tokenbroker.ProviderError) (*tokenbroker.Token, error) {
	if l.Token.ValidFor(c.cfg.Now(), minValid) {
		return tokenOut(l), nil
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nil, unavailable(l.ProviderID, last, time.Second)
	}
	return nil, ctx.Err()
}

func unavailable(providerID string, cause *tokenbroker.ProviderError, retryAfter time.Duration) error {
	if retryAfter < time.Second {
		retryAfter = time.Second
	}
	e := &tokenbroker.ProviderUnavailableError{ProviderID: providerID, RetryAfter: retryAfter}
	if cause != nil {
		e.Cause = cause
	}
	return e
}

// fly runs or joins the flight for link l. Callers wait with their own
// context; the flight runs on a detached one, so the first caller giving up
// never abandons a refresh under way (I2, I5).
func (c *Coordinator) fly(ctx context.Context, p tokenbroker.Provider, l *tokenbroker.Link, window, minValid time.Duration) (*flightResult, error) {
	key := fmt.Sprintf("%s\x00%s\x00%d", l.ProviderID, l.UserID, minValid)
	ch := c.group.DoChan(key, func() (any, error) {
		c.flights.Add(1)
		defer c.flights.Done()
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*c.cfg.LeaseTTL+c.cfg.ProviderTimeout)
		defer cancel()
		return c.flight(fctx, p, l.UserID, window, minValid)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*flightResult), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// flight is steps 2–6 for one link on this replica. It returns a link whose
// token is fresh (or the newest one, when stale-while-revalidate serves a
// still-valid token), a transient failure, or a definite error.
func (c *Coordinator) flight(ctx context.Context, p tokenbroker.Provider, userID string, window, minValid time.Duration) (*flightResult, error) {
	st := c.cfg.Store
	var sub <-chan struct{}
	var cancelSub func()
	defer func() {
		if cancelSub != nil {
			cancelSub()
		}
	}()

	for {
		l, err := st.GetLink(ctx, userID, p.ID())
		if err != nil {
			return nil, err
		}
		if l.State == tokenbroker.LinkReauthRequired {
			return nil, c.reauthErr(l)
		}
		now := c.cfg.Now()
		if l.Token.ValidFor(now, window) {
			return &flightResult{link: l}, nil // refreshed meanwhile
		}
		if sub == nil {
			// Subscribe before trying the lease, so a commit between a
			// lost attempt and the wait cannot be missed (I5).
			sub, cancelSub = c.cfg.Signaler.Subscribe(l.ID)
		}
		takeover := l.LeaseOwner != "" && l.LeaseOwner != c.cfg.Owner

		// Step 4: one conditional statement judged on the database clock.
		// The lease is what keeps a second provider call for the same
		// generation from happening on any replica (I1, I2).
		won, err := st.AcquireLease(ctx, l.ID, l.Generation, c.cfg.Owner, c.cfg.LeaseTTL)
		if err != nil {
			return nil, err
		}
		if !won {
			// Step 2: inside the window and still valid: never wait for
			// another replica's refresh.
			if l.Token.ValidFor(now, minValid) {
				return &flightResult{link: l}, nil
			}
			c.stats.waits.Add(1)
			if err := c.wait(ctx, sub, l); err != nil {
				return nil, err
			}
			continue
		}
		// We hold the lease for generation l.Generation: l.Token.RefreshToken
		// is the current one and nobody else may send it (I1).
		return c.refreshHeld(ctx, p, l, takeover)
	}
}

// wait blocks until the link's signal, a poll tick, or the lease's expiry,
// whichever comes first. It never sleeps past the lease expiry without
// reading again, so a dead holder delays waiters by at most the TTL (I5).
func (c *Coordinator) wait(ctx context.Context, sub <-chan struct{}, l *tokenbroker.Link) error {
	d := c.cfg.PollInterval
	if !l.LeaseUntil.IsZero() {
		// LeaseUntil is on the database's clock; it only shortens the wait.
		if untilExpiry := time.Until(l.LeaseUntil) + 10*time.Millisecond; untilExpiry < d {
			d = max(untilExpiry, 10*time.Millisecond)
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-sub:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// refreshHeld calls the provider as the lease holder and commits (steps
// 4–6). The lease is released on every path that does not commit or mark.
func (c *Coordinator) refreshHeld(ctx context.Context, p tokenbroker.Provider, l *tokenbroker.Link, takeover bool) (res *flightResult, err error) {
	released := false
	defer func() {
		if !released {
			// A panic or error must not leave the lease to expire on its
			// own: waiters would be delayed by the TTL (I5).
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if _, rerr := c.cfg.Store.ReleaseLease(rctx, l.ID, c.cfg.Owner); rerr != nil {
				c.log.Warn("release lease failed", "user", l.UserID, "provider", l.ProviderID, "err", rerr)
			}
		}
	}()

	// The provider call runs on the flight's detached context with its own
	// timeout, well under the lease TTL (I1); no database connection is held
	// while it runs (I6).
	pctx, cancel := context.WithTimeout(ctx, c.cfg.ProviderTimeout)
	c.cfg.Metrics.providerCall(l.ProviderID)
	tok, perr := p.Refresh(pctx, l.Token.RefreshToken)
	cancel()

	if perr == nil {
		if tok.RefreshToken == "" {
			tok.RefreshToken = l.Token.RefreshToken // provider does not rotate
		}
		if c.cfg.BeforeCommit != nil {
			c.cfg.BeforeCommit(ctx, l)
		}
		next := *l
		next.Token = *tok
		committed, err := c.commit(ctx, &next)
		if err != nil {
			return nil, err
		}
		released = true // the commit cleared the lease, or someone replaced it
		if !committed {
			// Our lease expired under us and another writer moved the
			// generation: the token we got is lost (I2's window). Their
			// newer generation stands (I3).
			c.stats.lostCommits.Add(1)
			c.cfg.Metrics.lost("commit_lost")
			c.log.Error("refreshed token could not be committed: the link moved to a newer generation while this replica held an expired lease; the provider's answer is discarded",
				"user", l.UserID, "provider", l.ProviderID, "generation", l.Generation)
			c.audit(l, tokenbroker.AuditLostRefresh, "commit_lost", "refreshed token discarded: newer generation committed by another writer")
			cur, err := c.cfg.Store.GetLink(ctx, l.UserID, l.ProviderID)
			if err != nil {
				return nil, err
			}
			if cur.State == tokenbroker.LinkReauthRequired {
				return nil, c.reauthErr(cur)
			}
			return &flightResult{link: cur}, nil
		}
		c.cfg.Metrics.refreshed(l.ProviderID)
		c.audit(l, tokenbroker.AuditLinkRefresh, "ok", "")
		next.Generation = l.Generation + 1
		next.LeaseOwner, next.LeaseUntil = "", time.Time{}
		return &flightResult{link: &next}, nil
	}

	var pe *tokenbroker.ProviderError
	if !errors.As(perr, &pe) {
		pe = &tokenbroker.ProviderError{ProviderID: l.ProviderID, Err: perr}
	}
	if !pe.Permanent {
		// Step 7: release (deferred), report; the caller backs off.
		c.cfg.Metrics.failed(l.ProviderID, "transient")
		c.log.Warn("provider refresh failed transiently", "user", l.UserID, "provider", l.ProviderID, "err", pe)
		c.audit(l, tokenbroker.AuditRefreshFailed, "transient", pe.Reason())
		return &flightResult{transient: pe}, nil
	}

	// Step 6: the provider rejected the grant. Read again: a moved
	// generation means another writer refreshed; theirs is returned and
	// nothing is cleared (I4).
	c.cfg.Metrics.failed(l.ProviderID, "permanent")
	cur, err := c.cfg.Store.GetLink(ctx, l.UserID, l.ProviderID)
	if err != nil {
		return nil, err
	}
	if cur.Generation != l.Generation {
		c.log.Info("provider rejected a refresh token already replaced by another writer; using the newer generation",
			"user", l.UserID, "provider", l.ProviderID, "generation", cur.Generation)
		return &flightResult{link: cur}, nil
	}
	reason := pe.Reason()
	if takeover {
		// We took over an expired lease: the previous holder may have died
		// after the provider answered and before its commit. Say so.
		c.stats.lostRefreshes.Add(1)
		c.cfg.Metrics.lost("holder_died")
		reason = tokenbroker.Truncate("lost refresh: a previous lease holder ("+l.LeaseOwner+") stopped while refreshing, and the provider then rejected the refresh token ("+reason+")", 300)
		c.log.Error("lost refresh: provider rejected the refresh token after a lease takeover; the previous holder most likely died between the provider's answer and its commit",
			"user", l.UserID, "provider", l.ProviderID, "previous_owner", l.LeaseOwner, "generation", l.Generation, "provider_error", pe.Reason())
		c.audit(l, tokenbroker.AuditLostRefresh, "holder_died", reason)
	}
	// Mark by CAS on the generation: a token written meanwhile is never
	// overwritten or hidden (I3, I4).
	marked, err := c.cfg.Store.MarkReauthRequired(ctx, l.ID, l.Generation, reason)
	if err != nil {
		return nil, err
	}
	released = true
	if !marked {
		cur, err := c.cfg.Store.GetLink(ctx, l.UserID, l.ProviderID)
		if err != nil {
			return nil, err
		}
		if cur.State == tokenbroker.LinkReauthRequired {
			return nil, c.reauthErr(cur)
		}
		return &flightResult{link: cur}, nil
	}
	c.log.Warn("link needs re-authentication: the provider rejected its grant",
		"user", l.UserID, "provider", l.ProviderID, "reason", reason)
	c.audit(l, tokenbroker.AuditLinkBroken, "reauth_required", reason)
	return nil, &tokenbroker.ReauthRequiredError{UserID: l.UserID, ProviderID: l.ProviderID, Reason: reason}
}

// commit writes a refreshed token by CAS on the generation (step 5, I3). A
// transient database error does not drop the token: the commit is retried
// with backoff for CommitRetryFor, since the provider has already rotated
// the refresh token and this copy is the only one (I2).
func (c *Coordinator) commit(ctx context.Context, next *tokenbroker.Link) (bool, error) {
	deadline := time.Now().Add(c.cfg.CommitRetryFor)
	for attempt := 0; ; attempt++ {
		ok, err := c.cfg.Store.CommitRefresh(ctx, next)
		if err == nil {
			return ok, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.log.Error("refreshed token lost: commit failed until the retry budget ran out",
				"user", next.UserID, "provider", next.ProviderID, "err", err)
			c.cfg.Metrics.lost("commit_failed")
			c.audit(next, tokenbroker.AuditLostRefresh, "commit_failed", "commit failed: "+tokenbroker.ErrorCode(err))
			return false, err
		}
		c.stats.commitRetries.Add(1)
		c.log.Warn("commit of refreshed token failed; retrying with the token kept in memory",
			"user", next.UserID, "provider", next.ProviderID, "attempt", attempt+1, "err", err)
		t := time.NewTimer(c.backoff(attempt, 0))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
}

// backoff returns a full-jitter exponential delay, at least retryAfter.
func (c *Coordinator) backoff(attempt int, retryAfter time.Duration) time.Duration {
	d := c.cfg.BaseBackoff << min(attempt, 16)
	if d > c.cfg.MaxBackoff || d <= 0 {
		d = c.cfg.MaxBackoff
	}
	c.randMu.Lock()
	f := c.cfg.Rand()
	c.randMu.Unlock()
	d = time.Duration(float64(d) * (0.5 + f/2))
	return max(d, retryAfter)
}

func (c *Coordinator) reauthErr(l *tokenbroker.Link) error {
	return &tokenbroker.ReauthRequiredError{UserID: l.UserID, ProviderID: l.ProviderID, Reason: l.FailureReason}
}

func (c *Coordinator) audit(l *tokenbroker.Link, action, outcome, detail string) {
	c.cfg.Auditor.Record(tokenbroker.AuditEvent{
		Time: c.cfg.Now(), Actor: c.cfg.Owner, Action: action,
		UserID: l.UserID, ProviderID: l.ProviderID, Outcome: outcome, Detail: detail,
	})
}

// tokenOut copies the caller-visible part of a link's token. The refresh
// token never leaves the coordinator.
func tokenOut(l *tokenbroker.Link) *tokenbroker.Token {
	t := l.Token
	t.RefreshToken = ""
	return &t
}
