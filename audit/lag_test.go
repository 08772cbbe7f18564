package audit_test

import (
	"context"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/audit"
)

// TestLag: the lag is the age of the oldest event recorded and not yet
// written: an event held after a failed write, or a token read counted
// into the current interval; it is 0 once everything is written.
func TestLag(t *testing.T) {
	ctx := context.Background()
	st := MustStore(t)
	fs := &faultyStore{AuditStore: st, failN: 1}
	b := audit.NewBatcher(fs, audit.Options{FlushInterval: time.Hour})
	defer b.Close(ctx)
	ev := event(0)
	if lag := b.Lag(ev.Time); lag != 0 {
		t.Fatalf("lag with nothing recorded = %v", lag)
	}
	b.Record(ev)
	if err := b.Flush(ctx); err == nil {
		t.Fatal("flush succeeded although the store failed")
	}
	if lag := b.Lag(ev.Time.Add(5 * time.Second)); lag != 5*time.Second {
		t.Fatalf("lag 5 s after an event the store refused = %v, want 5s", lag)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if lag := b.Lag(ev.Time.Add(time.Minute)); lag != 0 {
		t.Fatalf("lag once written = %v, want 0", lag)
	}
	// A token read waits for the interval's row.
	read := event(1)
	read.Action = tokenbroker.AuditTokenRead
	b.Record(read)
	if lag := b.Lag(read.Time.Add(2 * time.Second)); lag != 2*time.Second {
		t.Fatalf("lag of a counted token read = %v, want 2s", lag)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if lag := b.Lag(read.Time.Add(time.Minute)); lag != 0 {
		t.Fatalf("lag after the flush = %v, want 0", lag)
	}
}
