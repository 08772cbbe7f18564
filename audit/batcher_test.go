package audit_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/audit"
	"github.com/tokenbroker/tokenbroker/httpapi/httpapitest"
	"github.com/tokenbroker/tokenbroker/store/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// MustStore opens a migrated SQLite store in a temporary directory.
func MustStore(tb testing.TB) *sqlite.Store {
	tb.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "audit.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	return s
}

// faultyStore wraps a real store: it can hold AppendAudit until released,
// fail the next calls, and reports every batch it was given.
type faultyStore struct {
	tokenbroker.AuditStore
	mu      sync.Mutex
	gate    chan struct{} // non-nil: AppendAudit waits for it to close
	failN   int
	batches chan int
}

func (f *faultyStore) AppendAudit(ctx context.Context, events []tokenbroker.AuditEvent) error {
	f.mu.Lock()
	gate := f.gate
	fail := f.failN > 0
	if fail {
		f.failN--
	}
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.batches != nil {
		f.batches <- len(events)
	}
	if fail {
		return errors.New("injected: database unavailable")
	}
	return f.AuditStore.AppendAudit(ctx, events)
}

// event is a lifecycle event (one row each).
func event(i int) tokenbroker.AuditEvent {
	return tokenbroker.AuditEvent{
		Time:   time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(i) * time.Second),
		Actor:  "key:test",
		Action: tokenbroker.AuditLinkRefresh, UserID: fmt.Sprintf("user-%d", i), ProviderID: "demo", Outcome: "ok",
	}
}

func countAudit(tb testing.TB, s tokenbroker.AuditStore) int {
	tb.Helper()
	evs, err := s.ListAudit(context.Background(), tokenbroker.AuditFilter{Limit: 1000})
	if err != nil {
		tb.Fatal(err)
	}
	return len(evs)
}

func TestFlushWritesEverythingRecordedBefore(t *testing.T) {
	ctx := context.Background()
	st := MustStore(t)
	b := audit.NewBatcher(st, audit.Options{FlushInterval: time.Hour, MaxBatch: 3})
	defer b.Close(ctx)
	for i := range 10 {
		b.Record(event(i))
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	evs, err := st.ListAudit(ctx, tokenbroker.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 10 {
		t.Fatalf("written %d events, want 10", len(evs))
	}
	// Newest first: the last recorded is user-9.
	if evs[0].UserID != "user-9" || evs[9].UserID != "user-0" {
		t.Errorf("order: first %q last %q", evs[0].UserID, evs[9].UserID)
	}
	if b.Written() != 10 || b.Dropped() != 0 {
		t.Errorf("written %d dropped %d", b.Written(), b.Dropped())
	}
}

func TestStampsTimeWhenMissing(t *testing.T) {
	ctx := context.Background()
	st := MustStore(t)
	now := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	b := audit.NewBatcher(st, audit.Options{FlushInterval: time.Hour, Now: func() time.Time { return now }})
	defer b.Close(ctx)
	b.Record(tokenbroker.AuditEvent{Actor: "system", Action: tokenbroker.AuditLinkDelete, Outcome: "ok"})
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	evs, _ := st.ListAudit(ctx, tokenbroker.AuditFilter{})
	if len(evs) != 1 || !evs[0].Time.Equal(now) {
		t.Fatalf("events %+v, want one at %v", evs, now)
	}
}

// A full batch is written without waiting for the interval or a Flush.
func TestFullBatchWrittenAtOnce(t *testing.T) {
	ctx := context.Background()
	fs := &faultyStore{AuditStore: MustStore(t), batches: make(chan int, 10)}
	b := audit.NewBatcher(fs, audit.Options{FlushInterval: time.Hour, MaxBatch: 4})
	defer b.Close(ctx)
	for i := range 4 {
		b.Record(event(i))
	}
	if n := <-fs.batches; n != 4 {
		t.Fatalf("batch of %d, want 4", n)
	}
}

// The interval flushes without a Flush call.
func TestIntervalFlush(t *testing.T) {
	ctx := context.Background()
	fs := &faultyStore{AuditStore: MustStore(t), batches: make(chan int, 10)}
	b := audit.NewBatcher(fs, audit.Options{FlushInterval: 5 * time.Millisecond, MaxBatch: 100})
	defer b.Close(ctx)
	b.Record(event(1))
	if n := <-fs.batches; n != 1 {
		t.Fatalf("batch of %d, want 1", n)
	}
}

// Record never blocks, even while the store hangs: events beyond the
// buffer are dropped, counted and reported in the log.
func TestRecordNeverBlocksWhenStoreHangs(t *testing.T) {
	ctx := context.Background()
	st := MustStore(t)
	fs := &faultyStore{AuditStore: st, gate: make(chan struct{})}
	logs := httpapitest.NewLogCapture()
	watch := logs.Watch()
	b := audit.NewBatcher(fs, audit.Options{FlushInterval: 5 * time.Millisecond, MaxBatch: 1, Buffer: 4, Logger: logs.Logger()})

	const n = 1000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			b.Record(event(i)) // must return even though the store hangs
		}
	}()
	<-done
	if b.Dropped() == 0 {
		t.Fatal("no event dropped although the store hangs and the buffer holds 4")
	}
	// Release the store; the next interval tick reports the drops.
	close(fs.gate)
	for line := range watch {
		if strings.Contains(line, "audit events dropped") {
			break
		}
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := uint64(countAudit(t, st)); got+b.Dropped() != n {
		t.Errorf("written %d + dropped %d != recorded %d", got, b.Dropped(), n)
	}
}

// A failed write is retried; nothing is lost while the buffer lasts.
func TestFailedWriteRetried(t *testing.T) {
	ctx := context.Background()
	st := MustStore(t)
	fs := &faultyStore{AuditStore: st, failN: 1}
	logs := httpapitest.NewLogCapture()
	b := audit.NewBatcher(fs, audit.Options{FlushInterval: time.Hour, Logger: logs.Logger()})
	defer b.Close(ctx)
	for i := range 5 {
		b.Record(event(i))
	}
	if err := b.Flush(ctx); err == nil {
		t.Fatal("flush succeeded although the store failed")
	}
	if got := countAudit(t, st); got != 0 {
		t.Fatalf("written %d after a failure", got)
	}
	b.Record(event(5))
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := countAudit(t, st); got != 6 {
		t.Fatalf("written %d, want 6 (the failed batch retried)", got)
	}
}

// Close writes what is buffered; later records are dropped, not panics.
func TestCloseFlushesAndStops(t *testing.T) {
	ctx := context.Background()
	st := MustStore(t)
	b := audit.NewBatcher(st, audit.Options{FlushInterval: time.Hour})
	for i := range 7 {
		b.Record(event(i))
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := countAudit(t, st); got != 7 {
		t.Fatalf("written %d at close, want 7", got)
	}
	b.Record(event(8))
	if b.Dropped() != 1 {
		t.Errorf("dropped %d after close, want 1", b.Dropped())
	}
	if err := b.Close(ctx); err != nil {
		t.Errorf("second close: %v", err)
	}
	if err := b.Flush(ctx); err == nil {
		t.Error("flush after close succeeded")
	}
}

// Concurrent recorders under -race: every event is written exactly once.
func TestConcurrentRecord(t *testing.T) {
	ctx := context.Background()
	st := MustStore(t)
	b := audit.NewBatcher(st, audit.Options{FlushInterval: time.Millisecond, MaxBatch: 16, Buffer: 1000})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				b.Record(event(g*100 + i))
			}
		}()
	}
	wg.Wait()
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := countAudit(t, st); got != 400 || b.Dropped() != 0 {
		t.Fatalf("written %d dropped %d, want 400 and 0", got, b.Dropped())
	}
}

func TestCollector(t *testing.T) {
	ctx := context.Background()
	b := audit.NewBatcher(MustStore(t), audit.Options{FlushInterval: time.Hour})
	b.Record(event(1))
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b.Record(event(2)) // dropped: closed
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(b.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0].GetCounter().GetValue()
	}
	if got["tokenbroker_audit_events_written_total"] != 1 || got["tokenbroker_audit_events_dropped_total"] != 1 {
		t.Fatalf("metrics %v, want written 1 dropped 1", got)
	}
}
