package audit_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/audit"
	"github.com/tokenbroker/tokenbroker/store/sqlite"
)

const retention = 30 * 24 * time.Hour

var quiet = slog.New(slog.DiscardHandler)

// seedAround writes old rows just past the retention and young rows just
// within it, on the database clock, and returns how many of each.
func seedAround(t *testing.T, st *sqlite.Store) (old, young int) {
	t.Helper()
	ctx := context.Background()
	now, err := st.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	horizon := now.Add(-retention)
	var evs []tokenbroker.AuditEvent
	for i := range 5 {
		e := event(i)
		e.Time = horizon.Add(-time.Minute - time.Duration(i)*time.Hour)
		evs = append(evs, e)
	}
	agg := read("key:a", "alice", 0)
	agg.Time, agg.FirstAt, agg.Count = horizon.Add(-time.Minute), horizon.Add(-2*time.Minute), 500
	evs = append(evs, agg)
	for i := range 3 {
		e := event(i)
		e.Time = horizon.Add(time.Minute + time.Duration(i)*time.Hour)
		evs = append(evs, e)
	}
	if err := st.AppendAudit(ctx, evs); err != nil {
		t.Fatal(err)
	}
	return 6, 3
}

func newPruner(t *testing.T, st audit.PruneStore, owner string) *audit.Pruner {
	t.Helper()
	p, err := audit.NewPruner(st, audit.PrunerOptions{Retention: retention, Owner: owner, Batch: 2, Pause: -1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A pass deletes, in batches, exactly the rows older than the retention
// on the database clock.
func TestPrunerDeletesPastRetention(t *testing.T) {
	ctx := context.Background()
	st := MustStore(t)
	old, young := seedAround(t, st)
	p := newPruner(t, st, "r1")
	n, ran, err := p.Prune(ctx)
	if err != nil || !ran {
		t.Fatalf("Prune = %d, %v, %v", n, ran, err)
	}
	if n != int64(old) || p.Pruned() != uint64(old) {
		t.Errorf("deleted %d (counter %d), want %d", n, p.Pruned(), old)
	}
	if left := allRows(t, st); len(left) != young {
		t.Errorf("%d rows left, want %d", len(left), young)
	}
	if n, _, _ := p.Prune(ctx); n != 0 {
		t.Errorf("a second pass deleted %d", n)
	}
}

// gatedStore holds the first PruneAudit until released.
type gatedStore struct {
	audit.PruneStore
	once     sync.Once
	entered  chan struct{}
	release  chan struct{}
	returned chan struct{} // closed when the first PruneAudit returned
}

func newGated(st audit.PruneStore) *gatedStore {
	return &gatedStore{PruneStore: st, entered: make(chan struct{}), release: make(chan struct{}), returned: make(chan struct{})}
}

func (g *gatedStore) PruneAudit(ctx context.Context, before time.Time, limit int) (int64, error) {
	first := false
	g.once.Do(func() {
		first = true
		close(g.entered)
		<-g.release
	})
	n, err := g.PruneStore.PruneAudit(ctx, before, limit)
	if first {
		close(g.returned)
	}
	return n, err
}

// While one replica prunes, another's pass does nothing; once the first
// is done, the lease is free again.
func TestOnePrunerAtATime(t *testing.T) {
	ctx := context.Background()
	st := MustStore(t)
	old, _ := seedAround(t, st)
	g := newGated(st)
	a, b := newPruner(t, g, "replica-a"), newPruner(t, st, "replica-b")
	type result struct {
		n   int64
		ran bool
		err error
	}
	done := make(chan result)
	go func() {
		n, ran, err := a.Prune(ctx)
		done <- result{n, ran, err}
	}()
	<-g.entered
	if n, ran, err := b.Prune(ctx); ran || n != 0 || err != nil {
		t.Errorf("b pruned while a held the lease: %d, %v, %v", n, ran, err)
	}
	close(g.release)
	if r := <-done; !r.ran || r.n != int64(old) || r.err != nil {
		t.Errorf("a: %+v, want %d rows", r, old)
	}
	if _, ran, err := b.Prune(ctx); !ran || err != nil {
		t.Errorf("b could not prune after a released the lease: %v, %v", ran, err)
	}
}

// Start runs a pass at once; Close stops the loop.
func TestPrunerStartClose(t *testing.T) {
	st := MustStore(t)
	old, _ := seedAround(t, st)
	g := newGated(st)
	close(g.release)
	p, err := audit.NewPruner(g, audit.PrunerOptions{Retention: retention, Owner: "r1", Batch: 100, Logger: quiet,
		After: func(time.Duration) <-chan time.Time { return nil }}) // the next interval never comes
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	<-g.returned
	p.Close()
	if p.Pruned() != uint64(old) {
		t.Errorf("pruned %d, want %d", p.Pruned(), old)
	}
}
