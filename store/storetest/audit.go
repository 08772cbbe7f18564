package storetest

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

// auditTests cover the audit trail's aggregated rows, its retention and
// the job leases that elect the replica that prunes.
var auditTests = []conformanceTest{
	{"AuditAggregatedRowKeepsCountAndFirstAt", testAuditAggregated},
	{"PruneAuditDeletesExactlyPastTheHorizon", testPruneAudit},
	{"JobLeaseOneHolderAtATime", testJobLease},
	{"JobLeaseRaceOneWinner", testJobLeaseRace},
}

func testAuditAggregated(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	last := MustNow(t, s).Truncate(time.Millisecond)
	first := last.Add(-900 * time.Millisecond)
	read := func(count int64, firstAt time.Time, user string) tokenbroker.AuditEvent {
		return tokenbroker.AuditEvent{Time: last, FirstAt: firstAt, Count: count, Actor: "key:abc",
			Action: tokenbroker.AuditTokenRead, UserID: user, ProviderID: "github", Outcome: "ok"}
	}
	if err := s.AppendAudit(c, []tokenbroker.AuditEvent{
		read(0, time.Time{}, "zero"),    // unset: one event
		read(1, first, "one"),           // one event: first_at is its time
		read(1234, first, "many"),       // aggregated
		read(7, time.Time{}, "nofirst"), // aggregated within one millisecond
	}); err != nil {
		t.Fatal(err)
	}
	evs, err := s.ListAudit(c, tokenbroker.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]tokenbroker.AuditEvent{}
	for _, e := range evs {
		got[e.UserID] = e
	}
	for user, want := range map[string]struct {
		count int64
		first time.Time
	}{"zero": {1, last}, "one": {1, last}, "many": {1234, first}, "nofirst": {7, last}} {
		e := got[user]
		if e.Count != want.count || !e.FirstAt.Equal(want.first) || !e.Time.Equal(last) {
			t.Errorf("%s: count %d first_at %v time %v; want %d, %v, %v", user, e.Count, e.FirstAt, e.Time, want.count, want.first, last)
		}
	}
	// The console's tallies add up the counts, not the rows.
	tally, err := s.CountAudit(c, tokenbroker.AuditCountQuery{Actions: []string{tokenbroker.AuditTokenRead},
		Since: last.Add(-time.Hour), Recent: last.Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	want := []tokenbroker.AuditTally{{ProviderID: "github", Action: tokenbroker.AuditTokenRead, Recent: 1243, Total: 1243}}
	if !slices.Equal(tally, want) {
		t.Errorf("CountAudit = %+v, want %+v", tally, want)
	}
}

// testPruneAudit: rows whose time (an aggregated row's last event) is
// before the horizon go, at the horizon and after stay, batch by batch.
func testPruneAudit(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	horizon := MustNow(t, s).Truncate(time.Millisecond).Add(-24 * time.Hour)
	offsets := []time.Duration{
		-30 * 24 * time.Hour, -2 * time.Hour, -time.Second, -time.Millisecond, // past the horizon
		0, time.Millisecond, time.Hour, // kept
	}
	var events []tokenbroker.AuditEvent
	for round := range 3 { // 21 rows, pruned in batches of 4
		for i, d := range offsets {
			events = append(events, tokenbroker.AuditEvent{Time: horizon.Add(d), Actor: "system",
				Action: tokenbroker.AuditLinkRefresh, UserID: "u", ProviderID: "p", Outcome: "ok", Detail: fmt.Sprint(round, "/", i)})
		}
	}
	// An aggregated row that began before the horizon and ended after it
	// is kept whole.
	events = append(events, tokenbroker.AuditEvent{Time: horizon.Add(time.Second), FirstAt: horizon.Add(-time.Second), Count: 9,
		Actor: "key:abc", Action: tokenbroker.AuditTokenRead, UserID: "u", ProviderID: "p", Outcome: "ok", Detail: "straddles"})
	if err := s.AppendAudit(c, events); err != nil {
		t.Fatal(err)
	}
	var deleted int64
	batches := 0
	for {
		n, err := s.PruneAudit(c, horizon, 4)
		if err != nil {
			t.Fatal(err)
		}
		if n > 4 {
			t.Fatalf("PruneAudit deleted %d rows with limit 4", n)
		}
		deleted += n
		batches++
		if n < 4 {
			break
		}
	}
	if deleted != 12 || batches != 4 {
		t.Errorf("pruned %d rows in %d batches, want 12 in 4", deleted, batches)
	}
	left, err := s.ListAudit(c, tokenbroker.AuditFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 10 {
		t.Errorf("%d rows left, want 10", len(left))
	}
	for _, e := range left {
		if e.Time.Before(horizon) {
			t.Errorf("row %q at %v is past the horizon %v and was kept", e.Detail, e.Time, horizon)
		}
	}
	if n, err := s.PruneAudit(c, horizon, 0); err != nil || n != 0 {
		t.Errorf("PruneAudit with limit 0 = %d, %v", n, err)
	}
}

func testJobLease(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	acquire := func(job, owner string, ttl time.Duration) bool {
		t.Helper()
		ok, err := s.AcquireJobLease(c, job, owner, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !acquire("prune", "a", time.Minute) {
		t.Fatal("a free lease was refused")
	}
	if acquire("prune", "b", time.Minute) {
		t.Fatal("b took a's live lease")
	}
	if !acquire("prune", "a", time.Minute) {
		t.Fatal("a could not renew its own lease")
	}
	if !acquire("other", "b", time.Minute) {
		t.Fatal("leases of different jobs are not independent")
	}
	if err := s.ReleaseJobLease(c, "prune", "b"); err != nil {
		t.Fatal(err)
	}
	if acquire("prune", "b", time.Minute) {
		t.Fatal("a release by a non-holder freed the lease")
	}
	if err := s.ReleaseJobLease(c, "prune", "a"); err != nil {
		t.Fatal(err)
	}
	if !acquire("prune", "b", -time.Millisecond) {
		t.Fatal("b could not take a released lease")
	}
	// b's lease expired at once (judged on the database clock): a takes it.
	if !acquire("prune", "a", time.Minute) {
		t.Fatal("a could not take an expired lease")
	}
	if _, err := s.AcquireJobLease(c, "", "a", time.Minute); tokenbroker.ErrorCode(err) != tokenbroker.EINVALID {
		t.Errorf("empty job: %v, want invalid", err)
	}
}

func testJobLeaseRace(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	var won atomic.Int32
	race(16, func(i int) {
		ok, err := s.AcquireJobLease(c, "race", fmt.Sprint("owner-", i), time.Minute)
		if err != nil {
			t.Error(err)
		}
		if ok {
			won.Add(1)
		}
	})
	if won.Load() != 1 {
		t.Fatalf("%d owners won one free lease, want 1", won.Load())
	}
}
