package refresh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// Defaults of [RefresherConfig].
const (
	DefaultRefresherInterval    = 30 * time.Second
	DefaultRefresherConcurrency = 8
	DefaultRefresherBatch       = 500
	DefaultIdleAfter            = 30 * 24 * time.Hour
	// maxPagesPerScan bounds the expiry pages one scan reads; links
	// further on are met by the next scan.
	maxPagesPerScan = 20
)

// RefresherStore is what the background refresher reads and marks, besides
// what its coordinator writes. tokenbroker.Store implements it.
type RefresherStore interface {
	Now(ctx context.Context) (time.Time, error)
	ListLinksExpiringBefore(ctx context.Context, t time.Time, after tokenbroker.ExpiryCursor, limit int) ([]*tokenbroker.Link, error)
	ListStaleLinks(ctx context.Context, q tokenbroker.StaleLinkQuery) ([]*tokenbroker.Link, error)
	MarkLinkIdle(ctx context.Context, linkID, generation int64, usedBefore time.Time, rec tokenbroker.Record) (bool, error)
}

// RefresherConfig configures a [Refresher]. Coordinator and Store are
// required.
type RefresherConfig struct {
	Coordinator *Coordinator
	Store       RefresherStore
	// Interval is the pause between scans (default 30s), drawn anew each
	// time between half and one and a half of it, so that replicas do not
	// scan in step.
	Interval time.Duration
	// Concurrency bounds the refreshes one replica's refresher runs at
	// once (default 8); Batch is the page size of its reads (default 500).
	Concurrency int
	Batch       int
	// IdleAfter: a link nobody asked for in this long (its LastUsedAt, on
	// the database clock) is marked idle instead of refreshed or kept
	// alive (default 30 days; negative: never).
	IdleAfter time.Duration
	// DatabaseNow reads the database's clock, which judges last use and
	// the age of tokens (default Store.Now). Token expiry is judged on the
	// coordinator's clock, as the coordinator judges it.
	DatabaseNow func(ctx context.Context) (time.Time, error)
	Logger      *slog.Logger
}

// Refresher is the background refresher of one replica: every interval it
// scans the links whose access token has entered its refresh-ahead window
// (the indexed ListLinksExpiringBefore) and refreshes each through its
// coordinator, so that callers find a valid token and never wait for the
// provider; it keeps alive the grants of providers that expire unused
// grants (per provider [tokenbroker.KeepAlive]); and it lets links nobody
// asks for any more go (idle), marking those whose grant has then expired
// by inactivity.
//
// Every replica runs one. They cooperate through the coordinator's
// protocol, not through any leader: each refresh takes the link's lease,
// so a generation is refreshed once across all replicas (I1), and a
// replica that finds a link refreshed, leased or backing off moves on.
// Each replica visits the due links in its own random order, so replicas
// spread over them instead of meeting on the same one.
type Refresher struct {
	cfg RefresherConfig
	co  *Coordinator
	log *slog.Logger

	randMu sync.Mutex
	rand   *rand.Rand

	mu     sync.Mutex // guards status
	status RefresherStatus

	stop, done chan struct{}
	startOnce  sync.Once
	stopOnce   sync.Once
	cancel     context.CancelFunc
	ctx        context.Context
}

// RefresherStatus is what the last scan found.
type RefresherStatus struct {
	// At is when the last scan started (zero: none yet).
	At time.Time
	// Lag is how late the most overdue link was: the time since the
	// oldest link due for a refresh entered its refresh-ahead window
	// (0: none was overdue).
	Lag time.Duration
	// Due counts the links inside their refresh-ahead window.
	Due int
}

// NewRefresher returns a refresher; start it with [Refresher.Start].
func NewRefresher(cfg RefresherConfig) (*Refresher, error) {
	if cfg.Coordinator == nil || cfg.Store == nil {
		return nil, errors.New("refresh: the refresher needs a Coordinator and a Store")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultRefresherInterval
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultRefresherConcurrency
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultRefresherBatch
	}
	if cfg.IdleAfter == 0 {
		cfg.IdleAfter = DefaultIdleAfter
	}
	if cfg.DatabaseNow == nil {
		cfg.DatabaseNow = cfg.Store.Now
	}
	log := cfg.Logger
	if log == nil {
		log = cfg.Coordinator.log
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Refresher{cfg: cfg, co: cfg.Coordinator, log: log.With("component", "refresher"),
		rand: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		stop: make(chan struct{}), done: make(chan struct{}), ctx: ctx, cancel: cancel}, nil
}

// Start runs the scans in the background until [Refresher.Close].
func (r *Refresher) Start() {
	r.startOnce.Do(func() {
		go func() {
			defer close(r.done)
			for {
				r.Scan(r.ctx)
				select {
				case <-r.stop:
					return
				case <-r.co.cfg.Clock.After(r.pause()):
				}
			}
		}()
	})
}

// Close stops the scans and waits for the one under way; refreshes it
// started end their flights (the coordinator's Close waits for them).
func (r *Refresher) Close() {
	r.stopOnce.Do(func() {
		close(r.stop)
		r.cancel()
		r.startOnce.Do(func() { close(r.done) })
		<-r.done
	})
}

// Status returns what the last scan found.
func (r *Refresher) Status() RefresherStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// pause is the interval with jitter: in [Interval/2, 3*Interval/2).
func (r *Refresher) pause() time.Duration {
	r.randMu.Lock()
	f := r.rand.Float64()
	r.randMu.Unlock()
	return time.Duration(float64(r.cfg.Interval) * (0.5 + f))
}

// Scan makes one pass: the refresh-ahead window, then each provider's
// keep-alive and inactivity limit. It returns when the refreshes it
// started have ended (or ctx ended).
func (r *Refresher) Scan(ctx context.Context) {
	dbNow, err := r.cfg.DatabaseNow(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("background refresh: read the database clock", "err", err)
		}
		return
	}
	work := r.newWork(ctx)
	// A pass reads at most maxPagesPerScan pages; while a pass stops there
	// having started work on its links (a backlog: a fleet due at once, a
	// replica back after a while), the next pass starts when that work ends
	// instead of an interval later. A pass that started nothing (all it
	// read is leased or backing off) ends the loop, so it never spins.
	for r.scanExpiring(ctx, work, dbNow) && ctx.Err() == nil {
		work.wait()
		if dbNow, err = r.cfg.DatabaseNow(ctx); err != nil {
			if ctx.Err() == nil {
				r.log.Warn("background refresh: read the database clock", "err", err)
			}
			return
		}
	}
	for _, p := range r.co.cfg.Providers.List() {
		if ctx.Err() != nil {
			break
		}
		r.scanKeepAlive(ctx, work, p, dbNow)
	}
	// The links this pass made idle are in the idle index once it ends.
	work.wait()
	for _, p := range r.co.cfg.Providers.List() {
		if ctx.Err() != nil {
			break
		}
		r.scanInactive(ctx, work, p, dbNow)
	}
	work.wait()
}

// used reports whether l was used (or connected) since the idle cut-off.
func (r *Refresher) used(l *tokenbroker.Link, dbNow time.Time) bool {
	if r.cfg.IdleAfter < 0 {
		return true
	}
	return !lastUse(l).Before(dbNow.Add(-r.cfg.IdleAfter))
}

// lastUse is when l was last asked for, or connected if never.
func lastUse(l *tokenbroker.Link) time.Time {
	if l.LastUsedAt.IsZero() {
		return l.CreatedAt
	}
	return l.LastUsedAt
}

// scanExpiring walks the links whose token expires within the largest
// refresh-ahead window, soonest first, and refreshes the due ones. It
// reports whether it stopped at maxPagesPerScan having started work (a
// refresh or a mark, each of which takes its link off the pages): more
// links may be due past its last page.
func (r *Refresher) scanExpiring(ctx context.Context, work *work, dbNow time.Time) bool {
	c := r.co
	horizon := time.Duration(0)
	for _, p := range c.cfg.Providers.List() {
		horizon = max(horizon, p.RefreshAhead())
	}
	now := c.cfg.Clock.Now()
	var (
		due    []*tokenbroker.Link
		oldest time.Time // when the most overdue link became due
		after  tokenbroker.ExpiryCursor
	)
	capped := false // the last page read was full and was page maxPagesPerScan
	marked := 0     // links this pass marks idle or reauth_required
	for page := 0; page < maxPagesPerScan; page++ {
		links, err := r.cfg.Store.ListLinksExpiringBefore(ctx, now.Add(horizon), after, r.cfg.Batch)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("background refresh: list expiring links", "err", err)
			}
			return false
		}
		capped = page == maxPagesPerScan-1 && len(links) == r.cfg.Batch
		for _, l := range links {
			after = tokenbroker.ExpiryCursor{Expiry: l.Token.Expiry, ID: l.ID}
			p, err := c.cfg.Providers.Provider(l.ProviderID)
			if err != nil {
				continue // a provider no longer configured: nothing to refresh with
			}
			dueAt := l.Token.Expiry.Add(-window(l, p, 0))
			if dueAt.After(now) {
				continue // not yet inside its window
			}
			switch {
			case !r.used(l, dbNow):
				marked++
				work.do(func(ctx context.Context) { r.markIdle(ctx, l, dbNow) })
				continue
			case l.Token.RefreshToken == "":
				if !l.Token.ValidFor(now, 0) {
					marked++
					work.do(func(ctx context.Context) {
						r.markBroken(ctx, l, tokenbroker.Reauth{Reason: tokenbroker.ReasonNoRefreshToken,
							Detail: "the access token expired and the link has no refresh token"}, actionNoRefreshTok)
					})
				}
				continue
			}
			if oldest.IsZero() || dueAt.Before(oldest) {
				oldest = dueAt
			}
			if l.NextAttemptAt.After(dbNow) || l.LeaseOwner != "" && l.LeaseUntil.After(dbNow) {
				continue // backing off, or another holder refreshes it
			}
			due = append(due, l)
		}
		if len(links) < r.cfg.Batch {
			break
		}
	}
	lag := time.Duration(0)
	if !oldest.IsZero() {
		lag = max(now.Sub(oldest), 0)
	}
	r.mu.Lock()
	r.status = RefresherStatus{At: now, Lag: lag, Due: len(due)}
	r.mu.Unlock()
	c.cfg.Metrics.refresherScan(lag, len(due))

	// Each replica in its own order, so that replicas spread over the due
	// links rather than all start on the first.
	r.randMu.Lock()
	r.rand.Shuffle(len(due), func(i, j int) { due[i], due[j] = due[j], due[i] })
	r.randMu.Unlock()
	for _, l := range due {
		work.do(func(ctx context.Context) { r.refresh(ctx, l, time.Time{}, actionRefresh) })
	}
	return capped && len(due)+marked > 0
}

// scanKeepAlive refreshes p's links whose grant is older than its
// keep-alive and that are still used, and lets the unused ones go idle.
func (r *Refresher) scanKeepAlive(ctx context.Context, work *work, p tokenbroker.Provider, dbNow time.Time) {
	ka := p.Info().KeepAlive
	if ka.RefreshAfter > 0 {
		before := dbNow.Add(-ka.RefreshAfter)
		links, err := r.cfg.Store.ListStaleLinks(ctx, tokenbroker.StaleLinkQuery{ProviderID: p.ID(),
			States: []tokenbroker.LinkState{tokenbroker.LinkActive, tokenbroker.LinkDegraded}, RefreshedBefore: before, Limit: r.cfg.Batch})
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("keep-alive: list stale links", "provider", p.ID(), "err", err)
			}
			return
		}
		for _, l := range links {
			if !r.used(l, dbNow) {
				work.do(func(ctx context.Context) { r.markIdle(ctx, l, dbNow) })
				continue
			}
			if l.NextAttemptAt.After(dbNow) || l.LeaseOwner != "" && l.LeaseUntil.After(dbNow) {
				continue
			}
			work.do(func(ctx context.Context) { r.refresh(ctx, l, before, actionKeepAlive) })
		}
	}
}

// scanInactive marks p's idle links whose tokens are older than its
// inactivity limit: their grant has expired by inactivity.
func (r *Refresher) scanInactive(ctx context.Context, work *work, p tokenbroker.Provider, dbNow time.Time) {
	if ka := p.Info().KeepAlive; ka.InactivityLimit > 0 {
		links, err := r.cfg.Store.ListStaleLinks(ctx, tokenbroker.StaleLinkQuery{ProviderID: p.ID(),
			States: []tokenbroker.LinkState{tokenbroker.LinkIdle}, RefreshedBefore: dbNow.Add(-ka.InactivityLimit), Limit: r.cfg.Batch})
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("keep-alive: list expired idle links", "provider", p.ID(), "err", err)
			}
			return
		}
		for _, l := range links {
			detail := fmt.Sprintf("expired by inactivity: not used since %s, and %s lets a grant unused for %s expire",
				l.LastUsedAt.UTC().Format(time.DateOnly), p.ID(), ka.InactivityLimit)
			work.do(func(ctx context.Context) {
				r.markBroken(ctx, l, tokenbroker.Reauth{Reason: tokenbroker.ReasonInactivity, Detail: detail}, actionInactivity)
			})
		}
	}
}

// refresh refreshes l through the coordinator if it still needs it.
func (r *Refresher) refresh(ctx context.Context, l *tokenbroker.Link, before time.Time, action string) {
	c := r.co
	// Bounded by what one flight can take: the provider call, the commit
	// retries, and a wait for another holder's lease and grace.
	ctx, cancel := c.cfg.Clock.WithTimeout(ctx, c.cfg.ProviderTimeout+2*c.cfg.LeaseTTL+c.cfg.Grace)
	defer cancel()
	c.cfg.Metrics.refresherAction(action)
	err := c.refreshLink(ctx, l.ProviderID, l.UserID, before)
	switch {
	case err == nil:
	case ctx.Err() != nil || errors.Is(err, tokenbroker.ErrReauthRequired) || tokenbroker.IsNotFound(err):
		// Stopped, or the link is broken or gone: its own write says so.
	default:
		c.cfg.Metrics.refresherAction(actionFailed)
		r.log.Debug("background refresh failed", "user", l.UserID, "provider", l.ProviderID, "err", err)
	}
}

// markIdle lets l go: nobody asked for it since the idle cut-off.
func (r *Refresher) markIdle(ctx context.Context, l *tokenbroker.Link, dbNow time.Time) {
	c := r.co
	last := lastUse(l)
	detail := "not used since " + last.UTC().Format(time.RFC3339)
	rec := tokenbroker.Record{Audit: []tokenbroker.AuditEvent{c.event(l, tokenbroker.AuditLinkIdle, "idle", detail)}}
	ok, err := r.cfg.Store.MarkLinkIdle(ctx, l.ID, l.Generation, dbNow.Add(-r.cfg.IdleAfter), rec)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			r.log.Warn("mark link idle", "user", l.UserID, "provider", l.ProviderID, "err", err)
		}
	case ok:
		c.cfg.Metrics.refresherAction(actionIdle)
		r.log.Info("link idle: nobody asked for its token lately; it is no longer refreshed in the background or kept alive",
			"user", l.UserID, "provider", l.ProviderID, "last_used", last)
	}
}

// markBroken marks l reauth_required with reason through the lease
// protocol, so a concurrent refresh or reconnect wins over it (I3, I4).
func (r *Refresher) markBroken(ctx context.Context, l *tokenbroker.Link, reason tokenbroker.Reauth, action string) {
	ok, err := r.co.markBroken(ctx, l, reason)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			r.log.Warn("mark link reauth_required", "user", l.UserID, "provider", l.ProviderID, "reason", reason.Reason, "err", err)
		}
	case ok:
		r.co.cfg.Metrics.refresherAction(action)
		r.log.Warn("link needs re-authentication", "user", l.UserID, "provider", l.ProviderID, "reason", reason.Reason, "detail", reason.Detail)
	}
}

// work runs the refresher's tasks, at most Concurrency at once.
type work struct {
	ctx context.Context
	sem chan struct{}
	wg  sync.WaitGroup
}

func (r *Refresher) newWork(ctx context.Context) *work {
	return &work{ctx: ctx, sem: make(chan struct{}, r.cfg.Concurrency)}
}

// do runs fn when a slot is free; it blocks meanwhile (or until ctx ends,
// when fn is dropped).
func (w *work) do(fn func(ctx context.Context)) {
	select {
	case w.sem <- struct{}{}:
	case <-w.ctx.Done():
		return
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer func() { <-w.sem }()
		fn(w.ctx)
	}()
}

func (w *work) wait() { w.wg.Wait() }

// refreshLink refreshes userID's link to providerID through the protocol
// if its token is inside the refresh-ahead window or, with before set, was
// obtained before it (keep-alive). It joins the link's flight on this
// replica; the flight's lease makes it the one refresh of the generation
// across replicas.
func (c *Coordinator) refreshLink(ctx context.Context, providerID, userID string, before time.Time) error {
	p, err := c.cfg.Providers.Provider(providerID)
	if err != nil {
		return err
	}
	l, err := c.cfg.Store.GetLink(ctx, userID, providerID)
	if err != nil {
		return err
	}
	if !l.State.Refreshable() {
		return reauthErr(l)
	}
	if l.Token.RefreshToken == "" || c.freshFor(p, l, 0, before) {
		return nil
	}
	_, err = c.fly(ctx, p, l, 0, before)
	return err
}

// fresh reports whether the flight f's link l needs no refresh: its token
// is valid beyond the window of f's callers and, for a keep-alive, was
// obtained at or after f's cut-off.
func (c *Coordinator) fresh(f *flight, p tokenbroker.Provider, l *tokenbroker.Link) bool {
	c.mu.Lock()
	before := f.before
	c.mu.Unlock()
	return c.freshFor(p, l, c.need(f), before)
}

func (c *Coordinator) freshFor(p tokenbroker.Provider, l *tokenbroker.Link, minValid time.Duration, before time.Time) bool {
	return l.Token.ValidFor(c.cfg.Clock.Now(), window(l, p, minValid)) && (before.IsZero() || !l.RefreshedAt.Before(before))
}

// markBroken marks l reauth_required with reason, as a lease holder does
// (step 6): it takes the lease of l's generation, so a concurrent refresh,
// reconnect or mark wins and this changes nothing, and writes the
// transition's audit and webhook events with the mark. It reports whether
// it marked the link.
func (c *Coordinator) markBroken(ctx context.Context, l *tokenbroker.Link, reason tokenbroker.Reauth) (bool, error) {
	g, err := c.cfg.Store.AcquireLease(ctx, tokenbroker.LeaseRequest{
		LinkID: l.ID, Generation: l.Generation, Owner: c.cfg.Owner, TTL: c.cfg.LeaseTTL, Grace: c.cfg.Grace,
	})
	if err != nil || !g.Won {
		return false, err
	}
	rec := tokenbroker.Record{
		Audit:  []tokenbroker.AuditEvent{c.event(l, tokenbroker.AuditLinkBroken, string(reason.Reason), reason.Detail)},
		Events: []tokenbroker.Event{tokenbroker.LinkEvent(tokenbroker.EventLinkReauthRequired, l, string(reason.Reason), reason.Detail)},
	}
	ok, err := c.cfg.Store.MarkReauthRequired(ctx, g.Lease, reason, rec)
	if err != nil {
		// Give the lease back rather than leave it to expire.
		if _, rerr := c.cfg.Store.ReleaseLease(context.WithoutCancel(ctx), g.Lease, tokenbroker.Release{}, tokenbroker.Record{}); rerr != nil {
			c.log.Warn("release lease failed", "user", l.UserID, "provider", l.ProviderID, "err", rerr)
		}
	}
	return ok, err
}
