package audit_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/audit"
)

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// read is a token read of user by actor at t0 + ms milliseconds.
func read(actor, user string, ms int) tokenbroker.AuditEvent {
	return tokenbroker.AuditEvent{Time: t0.Add(time.Duration(ms) * time.Millisecond), Actor: actor,
		Action: tokenbroker.AuditTokenRead, UserID: user, ProviderID: "demo", Outcome: "ok"}
}

func allRows(tb testing.TB, s tokenbroker.AuditStore) []tokenbroker.AuditEvent {
	tb.Helper()
	evs, err := s.ListAudit(context.Background(), tokenbroker.AuditFilter{Limit: 1000})
	if err != nil {
		tb.Fatal(err)
	}
	return evs
}

// One interval's reads become one row per (actor, user, provider,
// outcome), with the count, the first and the last read; lifecycle events
// recorded meanwhile stay one row each.
func TestReadsAggregatedPerInterval(t *testing.T) {
	ctx := context.Background()
	st := MustStore(t)
	b := audit.NewBatcher(st, audit.Options{FlushInterval: time.Hour})
	defer b.Close(ctx)
	for i := range 300 {
		b.Record(read("key:a", "alice", 500-i)) // out of order: first is 201, last 500
		b.Record(read("key:a", "bob", i))
		if i%100 == 0 {
			b.Record(read("key:b", "alice", i))
			b.Record(event(i))
		}
	}
	denied := read("key:a", "alice", 7)
	denied.Outcome = "forbidden"
	b.Record(denied)
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	type key struct{ action, actor, user, outcome string }
	got := map[key]tokenbroker.AuditEvent{}
	for _, e := range allRows(t, st) {
		k := key{e.Action, e.Actor, e.UserID, e.Outcome}
		if e.Action != tokenbroker.AuditTokenRead {
			k.user = "lifecycle"
			e.Count += got[k].Count
		} else if _, dup := got[k]; dup {
			t.Fatalf("two rows for %+v in one interval", k)
		}
		got[k] = e
	}
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	for k, want := range map[key]struct {
		count       int64
		first, last time.Time
	}{
		{tokenbroker.AuditTokenRead, "key:a", "alice", "ok"}:        {300, ms(201), ms(500)},
		{tokenbroker.AuditTokenRead, "key:a", "bob", "ok"}:          {300, ms(0), ms(299)},
		{tokenbroker.AuditTokenRead, "key:b", "alice", "ok"}:        {3, ms(0), ms(200)},
		{tokenbroker.AuditTokenRead, "key:a", "alice", "forbidden"}: {1, ms(7), ms(7)},
	} {
		e, ok := got[k]
		if !ok || e.Count != want.count || !e.FirstAt.Equal(want.first) || !e.Time.Equal(want.last) {
			t.Errorf("%+v: row %+v, want count %d from %v to %v", k, e, want.count, want.first, want.last)
		}
	}
	if lc := got[key{tokenbroker.AuditLinkRefresh, "key:test", "lifecycle", "ok"}]; lc.Count != 3 {
		t.Errorf("lifecycle rows count %d events, want 3 rows of one", lc.Count)
	}
	if rows := len(allRows(t, st)); rows != 7 || b.RowsWritten() != 7 || b.Written() != 300+300+3+1+3 {
		t.Errorf("rows %d (batcher %d), events %d; want 7 rows, 607 events", rows, b.RowsWritten(), b.Written())
	}
}

// Readers record while the writer keeps taking intervals (Flush, as the
// ticker does): every read is counted in exactly one written row, none
// lost and none twice, whichever interval it fell in.
func TestConcurrentReadsAcrossFlushes(t *testing.T) {
	ctx := context.Background()
	st := MustStore(t)
	b := audit.NewBatcher(st, audit.Options{FlushInterval: time.Hour, Buffer: 100000})
	const readers, perReader, users = 8, 2000, 4
	stop := make(chan struct{})
	flushed := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				flushed <- n
				return
			default:
			}
			if err := b.Flush(ctx); err != nil {
				t.Error(err)
			}
			n++
		}
	}()
	// Two halves, with a Flush between them that every reader waits for,
	// so reads certainly fall in more than one interval; the flusher above
	// takes intervals while the readers record, as the ticker does.
	half := make(chan struct{})
	var wg, firstHalf sync.WaitGroup
	for r := range readers {
		wg.Add(1)
		firstHalf.Add(1)
		go func() {
			defer wg.Done()
			for i := range perReader {
				if i == perReader/2 {
					firstHalf.Done()
					<-half
				}
				b.Record(read("key:a", fmt.Sprint("user-", (r+i)%users), i))
			}
		}()
	}
	firstHalf.Wait()
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	close(half)
	wg.Wait()
	close(stop)
	flushes := <-flushed
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	rows := 0
	var before int64
	for {
		evs, err := st.ListAudit(ctx, tokenbroker.AuditFilter{Limit: 1000, BeforeID: before})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			counts[e.UserID] += e.Count
			rows++
			before = e.ID
		}
		if len(evs) < 1000 {
			break
		}
	}
	for u := range users {
		if c := counts[fmt.Sprint("user-", u)]; c != readers*perReader/users {
			t.Errorf("user-%d: %d reads counted, want %d", u, c, readers*perReader/users)
		}
	}
	if b.Dropped() != 0 || b.Written() != readers*perReader {
		t.Errorf("written %d dropped %d, want %d and 0", b.Written(), b.Dropped(), readers*perReader)
	}
	t.Logf("%d reads in %d rows over %d flushes", readers*perReader, rows, flushes+1)
	if rows < 2*users {
		t.Errorf("%d rows: the reads should have fallen in at least two intervals", rows)
	}
}

// An interval holds at most Buffer distinct rows; further distinct reads
// are written as rows of their own or dropped and counted, never lost
// silently.
func TestReadsBeyondBufferAreRowsOrCountedDrops(t *testing.T) {
	ctx := context.Background()
	st := MustStore(t)
	b := audit.NewBatcher(st, audit.Options{FlushInterval: time.Hour, Buffer: 4})
	const n = 40
	for i := range n {
		b.Record(read("key:a", fmt.Sprint("user-", i), i))
		b.Record(read("key:a", fmt.Sprint("user-", i), i+1))
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var written int64
	for _, e := range allRows(t, st) {
		written += e.Count
	}
	if uint64(written) != b.Written() || uint64(written)+b.Dropped() != 2*n {
		t.Errorf("rows count %d, batcher written %d, dropped %d; want written+dropped = %d", written, b.Written(), b.Dropped(), 2*n)
	}
}

// A read recorded after Close is dropped and counted.
func TestReadAfterCloseDropped(t *testing.T) {
	ctx := context.Background()
	st := MustStore(t)
	b := audit.NewBatcher(st, audit.Options{FlushInterval: time.Hour})
	b.Record(read("key:a", "alice", 1))
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b.Record(read("key:a", "alice", 2))
	if b.Written() != 1 || b.Dropped() != 1 {
		t.Errorf("written %d dropped %d, want 1 and 1", b.Written(), b.Dropped())
	}
}

// blockingStore holds the batcher's next AppendAudit until released, so a
// test can record reads while an interval is being written.
type blockingStore struct {
	tokenbroker.Store
	entered, release chan struct{}
}

func (s *blockingStore) AppendAudit(ctx context.Context, evs []tokenbroker.AuditEvent) error {
	if s.entered != nil {
		close(s.entered)
		s.entered = nil
		<-s.release
	}
	return s.Store.AppendAudit(ctx, evs)
}

// Reads recorded while the writer is writing an interval belong to the
// next one: they are neither lost with the interval being written nor
// counted in it as well.
func TestReadsDuringAWriteGoToTheNextInterval(t *testing.T) {
	ctx := context.Background()
	st := &blockingStore{Store: MustStore(t), entered: make(chan struct{}), release: make(chan struct{})}
	entered := st.entered
	b := audit.NewBatcher(st, audit.Options{FlushInterval: time.Hour})
	defer b.Close(ctx)
	for i := range 10 {
		b.Record(read("key:a", "alice", i))
	}
	flushed := make(chan error)
	go func() { flushed <- b.Flush(ctx) }()
	<-entered // the writer has taken the interval and is writing it
	for i := range 7 {
		b.Record(read("key:a", "alice", 100+i))
	}
	close(st.release)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var counts []int64
	for _, e := range allRows(t, st) {
		counts = append(counts, e.Count)
	}
	slices.Sort(counts)
	if !slices.Equal(counts, []int64{7, 10}) {
		t.Fatalf("rows count %v reads; want one row of 10 (the interval written) and one of 7 (recorded during its write)", counts)
	}
}
