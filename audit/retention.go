package audit

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenbroker/tokenbroker"
)

// Defaults for [PrunerOptions].
const (
	DefaultRetention     = 90 * 24 * time.Hour
	DefaultPruneInterval = time.Hour
	DefaultPruneBatch    = 1000
	DefaultPrunePause    = 20 * time.Millisecond
	DefaultPruneLeaseTTL = time.Minute
)

// PruneJob names the job lease of the audit trail's retention.
const PruneJob = "audit.retention"

// PruneStore is what a [Pruner] needs of the store.
type PruneStore interface {
	Now(ctx context.Context) (time.Time, error)
	PruneAudit(ctx context.Context, before time.Time, limit int) (int64, error)
	tokenbroker.JobLeaseStore
}

// PrunerOptions configure a [Pruner]. Zero fields take the defaults,
// except Retention, which is required.
type PrunerOptions struct {
	// Retention is how long rows are kept: a row whose time (an
	// aggregated row's last event) is older than the database clock less
	// Retention is deleted.
	Retention time.Duration
	// Owner names this replica on the job lease.
	Owner string
	// Interval is how often a pass starts (the first at Start).
	Interval time.Duration
	// Batch is the most rows one statement deletes; Pause is the wait
	// between two, so other writers (SQLite has one at a time) get in.
	Batch int
	Pause time.Duration
	// LeaseTTL is how long the job lease lasts; it is renewed before each
	// batch, so a replica that dies mid-pass is replaced within it.
	LeaseTTL time.Duration
	Logger   *slog.Logger
	// After paces the waits (default time.After).
	After func(time.Duration) <-chan time.Time
}

// Pruner deletes audit rows older than the retention, in the background,
// on one replica at a time. Create it with [NewPruner], start it with
// [Pruner.Start], stop it with [Pruner.Close].
//
// Its lease protects none of docs/design.md's refresh invariants I1–I6
// (the audit trail is outside the refresh protocol): it only keeps
// replicas from deleting the same rows at once. Two passes that overlap
// (a holder stalled past its lease) are harmless: a DELETE of rows
// already gone deletes nothing.
type Pruner struct {
	store PruneStore
	opts  PrunerOptions
	log   *slog.Logger

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	pruned atomic.Uint64
}

// NewPruner returns a Pruner for store.
func NewPruner(store PruneStore, o PrunerOptions) (*Pruner, error) {
	if o.Retention <= 0 {
		return nil, errors.New("audit: the retention must be positive")
	}
	if o.Owner == "" {
		return nil, errors.New("audit: the pruner needs an owner")
	}
	if o.Interval <= 0 {
		o.Interval = DefaultPruneInterval
	}
	if o.Batch <= 0 {
		o.Batch = DefaultPruneBatch
	}
	if o.Pause < 0 {
		o.Pause = 0
	} else if o.Pause == 0 {
		o.Pause = DefaultPrunePause
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultPruneLeaseTTL
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.After == nil {
		o.After = time.After
	}
	return &Pruner{store: store, opts: o, log: o.Logger.With("component", "audit"),
		stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// Start runs a pass at once and then every Interval, until Close.
func (p *Pruner) Start() {
	go func() {
		defer close(p.done)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-p.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		for {
			if _, _, err := p.Prune(ctx); err != nil && ctx.Err() == nil {
				p.log.Warn("audit retention pass failed; retried at the next interval", "err", err)
			}
			select {
			case <-p.opts.After(p.opts.Interval):
			case <-ctx.Done():
				return
			}
		}
	}()
}

// Close stops the background passes (a batch under way is cancelled: one
// DELETE, so it happens whole or not at all) and waits for them. Call it
// once, after Start.
func (p *Pruner) Close() {
	p.stopOnce.Do(func() { close(p.stop) })
	<-p.done
}

// Pruned returns how many rows this Pruner deleted.
func (p *Pruner) Pruned() uint64 { return p.pruned.Load() }

// Prune runs one pass: if this replica gets the job lease, it deletes
// every row older than the retention (measured on the database clock at
// the start of the pass) in batches, renewing the lease before each, and
// releases the lease. It reports how many rows it deleted and whether it
// held the lease; another replica holding it is not an error.
func (p *Pruner) Prune(ctx context.Context) (deleted int64, ran bool, err error) {
	won, err := p.store.AcquireJobLease(ctx, PruneJob, p.opts.Owner, p.opts.LeaseTTL)
	if err != nil || !won {
		return 0, false, err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if rerr := p.store.ReleaseJobLease(rctx, PruneJob, p.opts.Owner); rerr != nil {
			p.log.Warn("release the audit retention lease", "err", rerr)
		}
	}()
	now, err := p.store.Now(ctx)
	if err != nil {
		return 0, true, err
	}
	horizon := now.Add(-p.opts.Retention)
	for {
		n, err := p.store.PruneAudit(ctx, horizon, p.opts.Batch)
		deleted += n
		p.pruned.Add(uint64(n))
		if err != nil {
			return deleted, true, err
		}
		if n < int64(p.opts.Batch) {
			break
		}
		select {
		case <-p.opts.After(p.opts.Pause):
		case <-ctx.Done():
			return deleted, true, ctx.Err()
		}
		if won, err := p.store.AcquireJobLease(ctx, PruneJob, p.opts.Owner, p.opts.LeaseTTL); err != nil || !won {
			// Stalled past the lease and replaced: the successor goes on.
			return deleted, true, err
		}
	}
	if deleted > 0 {
		p.log.Info("audit rows past the retention deleted", "rows", deleted, "before", horizon)
	}
	return deleted, true, nil
}

var prunedDesc = prometheus.NewDesc("tokenbroker_audit_rows_pruned_total",
	"Audit rows deleted by this replica because they were older than the retention.", nil, nil)

// Collector returns a Prometheus collector of tokenbroker_audit_rows_pruned_total.
func (p *Pruner) Collector() prometheus.Collector { return prunerCollector{p} }

type prunerCollector struct{ p *Pruner }

func (c prunerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- prunedDesc }

func (c prunerCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(prunedDesc, prometheus.CounterValue, float64(c.p.Pruned()))
}
