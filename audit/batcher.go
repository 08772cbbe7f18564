package audit

import (
	"context"
	"errors"
	"log/slog"
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
	// MaxBatch is the most events written in one AppendAudit.
	MaxBatch int
	// FlushInterval is the longest an event waits before it is written.
	FlushInterval time.Duration
	// Buffer is how many events may wait in memory before Record drops.
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

	closed    atomic.Bool
	closeOnce sync.Once

	dropped atomic.Uint64 // events lost: channel full, store failing, after Close
	written atomic.Uint64 // events written
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
	}
	go b.run()
	return b
}

// Record queues ev for writing. It never blocks: if the buffer is full, or
// the Batcher is closed, the event is dropped and counted. An event without
// a time is stamped with Options.Now.
func (b *Batcher) Record(ev tokenbroker.AuditEvent) {
	if b.closed.Load() {
		b.dropped.Add(1)
		return
	}
	if ev.Time.IsZero() {
		ev.Time = b.opts.Now()
	}
	select {
	case b.events <- ev:
	default:
		// The hot path must not wait for the audit trail: drop and count.
		b.dropped.Add(1)
	}
}

// Dropped returns how many events were lost so far (buffer full, store
// failing for longer than the buffer lasts, or recorded after Close).
func (b *Batcher) Dropped() uint64 { return b.dropped.Load() }

// Written returns how many events were written so far.
func (b *Batcher) Written() uint64 { return b.written.Load() }

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
		b.closed.Store(true)
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
// audit trail is outside the refresh protocol); it keeps the rule
// that the hot path never writes synchronously: callers only ever do a
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
			}
		case <-ticker.C:
			if len(pending) > 0 {
				pending = b.write(context.Background(), pending)
			}
			if d := b.dropped.Load(); d != reportedDrops {
				b.log.Warn("audit events dropped", "dropped_since_last_report", d-reportedDrops, "dropped_total", d)
				reportedDrops = d
			}
		case req := <-b.flush:
			pending = b.drain(pending)
			var err error
			pending, err = b.writeAll(req.ctx, pending)
			req.reply <- err
		case req := <-b.stop:
			pending = b.drain(pending)
			var err error
			pending, err = b.writeAll(req.ctx, pending)
			if n := len(pending); n > 0 {
				b.dropped.Add(uint64(n))
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
		b.dropped.Add(uint64(over))
		rest = rest[over:]
	}
	// Copy so the retained slice does not pin an ever-growing array.
	return append([]tokenbroker.AuditEvent(nil), rest...)
}

func (b *Batcher) append(ctx context.Context, batch []tokenbroker.AuditEvent) error {
	if err := b.store.AppendAudit(ctx, batch); err != nil {
		return err
	}
	b.written.Add(uint64(len(batch)))
	return nil
}

var _ tokenbroker.Auditor = (*Batcher)(nil)
