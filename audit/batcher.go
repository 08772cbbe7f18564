package audit

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// Defaults for [Options].
const (
	DefaultMaxBatch      = 256
	DefaultFlushInterval = time.Second
	DefaultBuffer        = 8192
	// writeTimeout bounds one AppendAudit made by the background goroutine.
	writeTimeout = 10 * time.Second
)

// Options configure a [Batcher]. Zero fields take the defaults.
type Options struct {
	// MaxBatch is the most rows written in one AppendAudit.
	MaxBatch int
	// FlushInterval is the longest an event waits before it is written,
	// and the interval over which token reads are aggregated.
	FlushInterval time.Duration
	// Buffer is how many events may wait in memory before Record drops,
	// and how many distinct aggregated token-read rows one interval holds
	// (further distinct reads are written as rows of their own).
	Buffer int
	// Logger receives write failures and drop reports.
	Logger *slog.Logger
	// Now stamps events recorded without a time.
	Now func() time.Time
}

// Batcher is a [tokenbroker.Auditor] that writes events in batches from one
// background goroutine. Create it with [NewBatcher] and stop it with
// [Batcher.Close]. All methods are safe for concurrent use.
type Batcher struct {
	store tokenbroker.AuditStore
	opts  Options
	log   *slog.Logger

	events chan tokenbroker.AuditEvent
	flush  chan flushRequest
	stop   chan flushRequest
	done   chan struct{}
	// kick asks the writer to take the reads early: the map is full.
	kick chan struct{}

	// mu guards reads, the token reads counted since the writer last took
	// them, and orders Close against them: a read counted before Close
	// is written by Close, one after it is dropped and counted.
	mu    sync.Mutex
	reads map[readKey]*tokenbroker.AuditEvent

	closed    atomic.Bool // set under mu
	closeOnce sync.Once

	dropped atomic.Uint64 // events lost: channel full, store failing, after Close
	written atomic.Uint64 // events written (an aggregated row counts its events)
	rows    atomic.Uint64 // rows written
	// oldestPending is the time (Unix nanoseconds) of the oldest event the
	// writer holds unwritten, 0 when none (see lag.go).
	oldestPending atomic.Int64
}

// readKey is what an aggregated token.read row is one of: the reads of
// one caller, user, provider and outcome (and detail: a workload's JWT
// id) within one flush interval.
type readKey struct {
	actor, user, provider, outcome, detail string
}

type flushRequest struct {
	ctx   context.Context
	reply chan error
}

// NewBatcher starts a Batcher writing to store.
func NewBatcher(store tokenbroker.AuditStore, opts Options) *Batcher {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.Buffer <= 0 {
		opts.Buffer = DefaultBuffer
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	b := &Batcher{
		store:  store,
		opts:   opts,
		log:    opts.Logger.With("component", "audit"),
		events: make(chan tokenbroker.AuditEvent, opts.Buffer),
		flush:  make(chan flushRequest),
		stop:   make(chan flushRequest),
		done:   make(chan struct{}),
		kick:   make(chan struct{}, 1),
		reads:  make(map[readKey]*tokenbroker.AuditEvent),
	}
	go b.run()
	return b
}

// Record queues ev for writing. It never blocks: if the buffer is full, or
// the Batcher is closed, the event is dropped and counted. An event without
// a time is stamped with Options.Now. A token read is counted into its
// interval's aggregated row (see the package documentation).
func (b *Batcher) Record(ev tokenbroker.AuditEvent) {
	if b.closed.Load() {
		b.dropped.Add(uint64(ev.N()))
		return
	}
	if ev.Time.IsZero() {
		ev.Time = b.opts.Now()
	}
	if ev.Action == tokenbroker.AuditTokenRead && b.count(&ev) {
		return
	}
	select {
	case b.events <- ev:
	default:
		// The hot path must not wait for the audit trail: drop and count.
		b.dropped.Add(uint64(ev.N()))
	}
}

// count adds the token read ev to its aggregated row. It reports false
// when the interval already has Buffer distinct rows: ev is then written
// as a row of its own, and the writer is asked to take the rows early.
func (b *Batcher) count(ev *tokenbroker.AuditEvent) bool {
	k := readKey{actor: ev.Actor, user: ev.UserID, provider: ev.ProviderID, outcome: ev.Outcome, detail: ev.Detail}
	first := began(ev)
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		b.dropped.Add(uint64(ev.N()))
		return true
	}
	if a := b.reads[k]; a != nil {
		a.Count += ev.N()
		if ev.Time.After(a.Time) {
			a.Time = ev.Time
		}
		if first.Before(a.FirstAt) {
			a.FirstAt = first
		}
		b.mu.Unlock()
		return true
	}
	if len(b.reads) < b.opts.Buffer {
		row := *ev
		row.Count, row.FirstAt = ev.N(), first
		b.reads[k] = &row
		b.mu.Unlock()
		return true
	}
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default: // already asked
	}
	return false
}

// takeReads appends the aggregated rows counted so far to pending, oldest
// first, and starts a new interval.
func (b *Batcher) takeReads(pending []tokenbroker.AuditEvent) []tokenbroker.AuditEvent {
	b.mu.Lock()
	reads := b.reads
	if len(reads) == 0 {
		b.mu.Unlock()
		return pending
	}
	b.reads = make(map[readKey]*tokenbroker.AuditEvent, len(reads))
	b.mu.Unlock()
	start := len(pending)
	for _, e := range reads {
		pending = append(pending, *e)
	}
	slices.SortFunc(pending[start:], func(x, y tokenbroker.AuditEvent) int {
		return cmp.Or(x.FirstAt.Compare(y.FirstAt), x.Time.Compare(y.Time), cmp.Compare(x.UserID, y.UserID),
			cmp.Compare(x.ProviderID, y.ProviderID), cmp.Compare(x.Actor, y.Actor), cmp.Compare(x.Outcome, y.Outcome))
	})
	return pending
}

// Dropped returns how many events were lost so far (buffer full, store
// failing for longer than the buffer lasts, or recorded after Close).
func (b *Batcher) Dropped() uint64 { return b.dropped.Load() }

// Written returns how many events were written so far; an aggregated row
// counts the reads it stands for.
func (b *Batcher) Written() uint64 { return b.written.Load() }

// RowsWritten returns how many rows were written so far.
func (b *Batcher) RowsWritten() uint64 { return b.rows.Load() }

// Flush writes every event recorded before the call and returns the
// store's error, if any. Failed events stay pending for a retry.
func (b *Batcher) Flush(ctx context.Context) error {
	return b.request(ctx, b.flush)
}

// Close writes everything still buffered and stops the background
// goroutine. Events recorded later are dropped. If ctx ends first, Close
// stops anyway and returns ctx's error; the unwritten events are lost.
// A background write under way when Close is called finishes first (it is
// bounded by a 10s timeout). Close may be called more than once; later
// calls return nil at once.
func (b *Batcher) Close(ctx context.Context) error {
	var err error
	first := false
	b.closeOnce.Do(func() {
		first = true
		b.mu.Lock()
		b.closed.Store(true)
		b.mu.Unlock()
		reply := make(chan error, 1)
		b.stop <- flushRequest{ctx: ctx, reply: reply}
		err = <-reply
		<-b.done
	})
	if !first {
		return nil
	}
	return err
}

func (b *Batcher) request(ctx context.Context, ch chan flushRequest) error {
	reply := make(chan error, 1)
	select {
	case ch <- flushRequest{ctx: ctx, reply: reply}:
	case <-b.done:
		return errors.New("audit: batcher closed")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run is the one goroutine that touches pending and the store. Its
// concurrency protects none of docs/design.md's refresh invariants I1–I6 (the
// audit trail is outside the refresh protocol); it keeps the token path
// from ever writing synchronously: callers only ever do a
// non-blocking channel send, and each AppendAudit holds its connection only
// for one batch, never across a provider call (in the spirit of I6).
func (b *Batcher) run() {
	defer close(b.done)
	ticker := time.NewTicker(b.opts.FlushInterval)
	defer ticker.Stop()

	var pending []tokenbroker.AuditEvent
	var reportedDrops uint64

	for {
		select {
		case ev := <-b.events:
			pending = append(pending, ev)
			if len(pending) >= b.opts.MaxBatch {
				pending = b.write(context.Background(), pending)
				b.notePending(pending)
			} else {
				b.noteAppended(&ev) // no scan of pending per event
			}
		case <-b.kick:
			pending = b.write(context.Background(), b.takeReads(pending))
			b.notePending(pending)
		case <-ticker.C:
			pending = b.takeReads(pending)
			if len(pending) > 0 {
				pending = b.write(context.Background(), pending)
			}
			b.notePending(pending)
			if d := b.dropped.Load(); d != reportedDrops {
				b.log.Warn("audit events dropped", "dropped_since_last_report", d-reportedDrops, "dropped_total", d)
				reportedDrops = d
			}
		case req := <-b.flush:
			pending = b.takeReads(b.drain(pending))
			var err error
			pending, err = b.writeAll(req.ctx, pending)
			b.notePending(pending) // before the reply: Lag is exact after Flush
			req.reply <- err
		case req := <-b.stop:
			pending = b.takeReads(b.drain(pending))
			var err error
			pending, err = b.writeAll(req.ctx, pending)
			if n := events(pending); n > 0 {
				b.dropped.Add(n)
				b.log.Error("audit events lost at close", "count", n)
			}
			req.reply <- err
			return
		}
	}
}

// drain moves every event already in the channel to pending.
func (b *Batcher) drain(pending []tokenbroker.AuditEvent) []tokenbroker.AuditEvent {
	for {
		select {
		case ev := <-b.events:
			pending = append(pending, ev)
		default:
			return pending
		}
	}
}

// writeAll writes pending in batches until it is empty or a write fails.
func (b *Batcher) writeAll(ctx context.Context, pending []tokenbroker.AuditEvent) ([]tokenbroker.AuditEvent, error) {
	for len(pending) > 0 {
		n := min(len(pending), b.opts.MaxBatch)
		if err := b.append(ctx, pending[:n]); err != nil {
			return pending, err
		}
		pending = pending[n:]
	}
	return nil, nil
}

// write writes pending in batches of MaxBatch; on failure it keeps what is
// left for a retry, bounded by Buffer (oldest dropped first).
func (b *Batcher) write(ctx context.Context, pending []tokenbroker.AuditEvent) []tokenbroker.AuditEvent {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	rest, err := b.writeAll(ctx, pending)
	if err == nil {
		return pending[:0]
	}
	b.log.Error("audit write failed; will retry", "pending", len(rest), "err", err)
	if len(rest) > b.opts.Buffer {
		over := len(rest) - b.opts.Buffer
		b.dropped.Add(events(rest[:over]))
		rest = rest[over:]
	}
	// Copy so the retained slice does not pin an ever-growing array.
	return append([]tokenbroker.AuditEvent(nil), rest...)
}

func (b *Batcher) append(ctx context.Context, batch []tokenbroker.AuditEvent) error {
	if err := b.store.AppendAudit(ctx, batch); err != nil {
		return err
	}
	b.written.Add(events(batch))
	b.rows.Add(uint64(len(batch)))
	return nil
}

// events is how many events rows stand for.
func events(rows []tokenbroker.AuditEvent) uint64 {
	var n uint64
	for i := range rows {
		n += uint64(rows[i].N())
	}
	return n
}

var _ tokenbroker.Auditor = (*Batcher)(nil)
