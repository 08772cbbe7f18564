package storetest

import (
	"slices"
	"sync"
	"testing"
	"time"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

// outboxTests cover [tokenbroker.OutboxStore].
var outboxTests = []conformanceTest{
	{"OutboxEnqueueAndClaim", testOutboxEnqueueAndClaim},
	{"OutboxEnqueueValidatesAndWritesNothing", testOutboxEnqueueValidates},
	{"OutboxDuplicateEventIDConflicts", testOutboxDuplicateID},
	{"OutboxClaimRaceEachRowOnce", testOutboxClaimRace},
	{"OutboxExpiredLeaseTakeoverFencesOldHolder", testOutboxTakeover},
	{"OutboxRouteFansOut", testOutboxRoute},
	{"OutboxRetryReschedules", testOutboxRetry},
	{"OutboxKillKeepsDeadLetter", testOutboxKill},
	{"OutboxCompleteRemoves", testOutboxComplete},
	{"OutboxRetryDeadLetter", testOutboxRetryDeadLetter},
}

// NewEvent returns a valid link event of user to provider.
func NewEvent(typ tokenbroker.EventType, user, provider string) tokenbroker.Event {
	return tokenbroker.Event{Type: typ, UserID: user, ProviderID: provider}
}

// MustEnqueue writes events to the outbox.
func MustEnqueue(t testing.TB, s tokenbroker.Store, events ...tokenbroker.Event) {
	t.Helper()
	if err := s.EnqueueEvents(t.Context(), events); err != nil {
		t.Fatalf("EnqueueEvents: %v", err)
	}
}

func mustClaim(t *testing.T, s tokenbroker.Store, owner string, ttl time.Duration, limit int) []*tokenbroker.Delivery {
	t.Helper()
	ds, err := s.ClaimDeliveries(ctx(t), owner, ttl, limit)
	if err != nil {
		t.Fatalf("ClaimDeliveries(%s): %v", owner, err)
	}
	return ds
}

func mustStats(t *testing.T, s tokenbroker.Store) tokenbroker.OutboxStats {
	t.Helper()
	st, err := s.OutboxStats(ctx(t))
	if err != nil {
		t.Fatalf("OutboxStats: %v", err)
	}
	return st
}

func testOutboxEnqueueAndClaim(t *testing.T, s tokenbroker.Store) {
	before := MustNow(t, s).Add(-time.Second)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	MustEnqueue(t, s,
		tokenbroker.Event{ID: "msg_given", Type: tokenbroker.EventLinkReauthRequired, Time: at,
			UserID: "alice", ProviderID: "github", Reason: "revoked", Detail: "invalid_grant: revoked"},
		tokenbroker.Event{Type: tokenbroker.EventProviderMisconfigured, ProviderID: "gitlab", Reason: "invalid_client"},
	)
	if st := mustStats(t, s); st.Pending != 2 || st.Dead != 0 || st.OldestPending.Before(before) {
		t.Fatalf("OutboxStats = %+v; want 2 pending since %v", st, before)
	}
	ds := mustClaim(t, s, "r1", time.Minute, 10)
	if len(ds) != 2 {
		t.Fatalf("claimed %d deliveries, want 2", len(ds))
	}
	d := ds[0]
	if d.Event.ID != "msg_given" || d.Event.Type != tokenbroker.EventLinkReauthRequired || !d.Event.Time.Equal(at) ||
		d.Event.UserID != "alice" || d.Event.ProviderID != "github" || d.Event.Reason != "revoked" ||
		d.Event.Detail != "invalid_grant: revoked" {
		t.Fatalf("first delivery's event = %+v", d.Event)
	}
	if d.Endpoint != "" || d.Status != tokenbroker.DeliveryPending || d.Attempts != 1 || d.LeaseOwner != "r1" ||
		!d.LeaseUntil.After(MustNow(t, s)) || d.CreatedAt.Before(before) {
		t.Fatalf("first delivery = %+v; want unrouted, pending, attempt 1, leased to r1", d)
	}
	p := ds[1].Event
	if len(p.ID) < 20 || p.UserID != "" || p.ProviderID != "gitlab" || p.Time.Before(before) {
		t.Fatalf("second event = %+v; want a drawn id and the database time", p)
	}
	if again := mustClaim(t, s, "r2", time.Minute, 10); len(again) != 0 {
		t.Fatalf("a second claimer got %d leased deliveries", len(again))
	}
}

func testOutboxEnqueueValidates(t *testing.T, s tokenbroker.Store) {
	for _, bad := range []tokenbroker.Event{
		{Type: "link.exploded", UserID: "alice", ProviderID: "github"},
		{Type: tokenbroker.EventLinkCreated, UserID: "alice", ProviderID: "Not Valid"},
		{Type: tokenbroker.EventLinkCreated, UserID: "al ice", ProviderID: "github"},
	} {
		// The good first event must not be written either: one transaction.
		err := s.EnqueueEvents(ctx(t), []tokenbroker.Event{NewEvent(tokenbroker.EventLinkCreated, "bob", "github"), bad})
		wantCode(t, err, tokenbroker.EINVALID)
	}
	if st := mustStats(t, s); st.Pending != 0 {
		t.Fatalf("OutboxStats = %+v after refused events; want nothing written", st)
	}
}

func testOutboxDuplicateID(t *testing.T, s tokenbroker.Store) {
	e := NewEvent(tokenbroker.EventLinkCreated, "alice", "github")
	e.ID = "msg_dup"
	MustEnqueue(t, s, e)
	wantCode(t, s.EnqueueEvents(ctx(t), []tokenbroker.Event{e}), tokenbroker.ECONFLICT)
}

func testOutboxClaimRace(t *testing.T, s tokenbroker.Store) {
	const events, claimers = 24, 8
	var evs []tokenbroker.Event
	for i := range events {
		evs = append(evs, NewEvent(tokenbroker.EventLinkCreated, "u"+string(rune('a'+i)), "github"))
	}
	MustEnqueue(t, s, evs...)
	var (
		mu  sync.Mutex
		got = map[int64]string{}
		wg  sync.WaitGroup
	)
	for i := range claimers {
		owner := "r" + string(rune('0'+i))
		wg.Go(func() {
			for {
				ds, err := s.ClaimDeliveries(ctx(t), owner, time.Minute, 2)
				if err != nil {
					t.Errorf("ClaimDeliveries: %v", err)
					return
				}
				if len(ds) == 0 {
					return
				}
				mu.Lock()
				for _, d := range ds {
					if prev, ok := got[d.ID]; ok {
						t.Errorf("delivery %d claimed by %s and %s", d.ID, prev, owner)
					}
					got[d.ID] = owner
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(got) != events {
		t.Fatalf("%d deliveries claimed, want %d", len(got), events)
	}
}

func testOutboxTakeover(t *testing.T, s tokenbroker.Store) {
	MustEnqueue(t, s, NewEvent(tokenbroker.EventLinkDeleted, "alice", "github"))
	old := mustClaim(t, s, "dead-replica", -time.Millisecond, 1) // a lease already expired
	if len(old) != 1 {
		t.Fatalf("claimed %d, want 1", len(old))
	}
	taken := mustClaim(t, s, "r2", time.Minute, 1)
	if len(taken) != 1 || taken[0].ID != old[0].ID || taken[0].Attempts != 2 || taken[0].LeaseOwner != "r2" {
		t.Fatalf("takeover = %+v; want the same row, attempt 2, owner r2", taken)
	}
	// The old holder wakes up: every write of its is fenced off.
	ok, err := s.CompleteDelivery(ctx(t), old[0])
	wantBool(t, "CompleteDelivery by the old holder", ok, err, false)
	ok, err = s.RetryDelivery(ctx(t), old[0], 0, 500, "x")
	wantBool(t, "RetryDelivery by the old holder", ok, err, false)
	ok, err = s.KillDelivery(ctx(t), old[0], 410, "x")
	wantBool(t, "KillDelivery by the old holder", ok, err, false)
	routed, err := s.RouteDelivery(ctx(t), old[0], []string{"a"})
	if err != nil || routed != nil {
		t.Fatalf("RouteDelivery by the old holder = %v, %v; want nil, nil", routed, err)
	}
	// A stale attempt of the same owner is fenced too.
	stale := *taken[0]
	stale.Attempts = 1
	ok, err = s.CompleteDelivery(ctx(t), &stale)
	wantBool(t, "CompleteDelivery with a stale attempt", ok, err, false)
	ok, err = s.CompleteDelivery(ctx(t), taken[0])
	wantBool(t, "CompleteDelivery by the holder", ok, err, true)
}

func testOutboxRoute(t *testing.T, s tokenbroker.Store) {
	MustEnqueue(t, s, NewEvent(tokenbroker.EventLinkReauthRequired, "alice", "github"),
		NewEvent(tokenbroker.EventLinkCreated, "bob", "github"))
	ds := mustClaim(t, s, "r1", time.Minute, 2)
	if len(ds) != 2 {
		t.Fatalf("claimed %d, want 2", len(ds))
	}
	routed, err := s.RouteDelivery(ctx(t), ds[0], []string{"crm", "pager"})
	if err != nil {
		t.Fatalf("RouteDelivery: %v", err)
	}
	if len(routed) != 2 {
		t.Fatalf("routed into %d deliveries, want 2", len(routed))
	}
	var eps []string
	for _, r := range routed {
		eps = append(eps, r.Endpoint)
		if !sameEvent(r.Event, ds[0].Event) || !r.CreatedAt.Equal(ds[0].CreatedAt) || r.LeaseOwner != "" ||
			r.Attempts != 0 || r.Status != tokenbroker.DeliveryPending || r.ID == ds[0].ID {
			t.Fatalf("routed delivery = %+v; want a new unleased row of the same event as %+v", r, ds[0])
		}
	}
	slices.Sort(eps)
	if !slices.Equal(eps, []string{"crm", "pager"}) {
		t.Fatalf("endpoints = %v", eps)
	}
	// Routing again (the unrouted row is gone) does nothing.
	if again, err := s.RouteDelivery(ctx(t), ds[0], []string{"crm"}); err != nil || again != nil {
		t.Fatalf("second RouteDelivery = %v, %v; want nil, nil", again, err)
	}
	// No endpoint wants the second event: it is removed.
	if none, err := s.RouteDelivery(ctx(t), ds[1], nil); err != nil || len(none) != 0 {
		t.Fatalf("RouteDelivery to no endpoint = %v, %v", none, err)
	}
	if st := mustStats(t, s); st.Pending != 2 {
		t.Fatalf("OutboxStats = %+v; want the 2 routed deliveries pending", st)
	}
	// The routed rows are due at once, each claimed on its own.
	claimed := mustClaim(t, s, "r2", time.Minute, 10)
	if len(claimed) != 2 || claimed[0].Attempts != 1 || claimed[0].Endpoint == "" {
		t.Fatalf("claimed after routing: %+v; want both routed rows at attempt 1", claimed)
	}
}

func testOutboxRetry(t *testing.T, s tokenbroker.Store) {
	MustEnqueue(t, s, NewEvent(tokenbroker.EventLinkDegraded, "alice", "github"))
	d := mustClaim(t, s, "r1", time.Minute, 1)[0]
	ok, err := s.RetryDelivery(ctx(t), d, 0, 500, "receiver answered 500")
	wantBool(t, "RetryDelivery", ok, err, true)
	again := mustClaim(t, s, "r2", time.Minute, 1)
	if len(again) != 1 || again[0].Attempts != 2 || again[0].LastStatus != 500 || again[0].LastError != "receiver answered 500" {
		t.Fatalf("after a retry with no delay: %+v; want it claimable at attempt 2 with the last answer", again)
	}
	ok, err = s.RetryDelivery(ctx(t), again[0], time.Hour, 0, "timeout")
	wantBool(t, "RetryDelivery in an hour", ok, err, true)
	if later := mustClaim(t, s, "r3", time.Minute, 1); len(later) != 0 {
		t.Fatalf("a delivery due in an hour was claimed: %+v", later[0])
	}
	if st := mustStats(t, s); st.Pending != 1 || st.Dead != 0 {
		t.Fatalf("OutboxStats = %+v; want 1 pending", st)
	}
}

func testOutboxKill(t *testing.T, s tokenbroker.Store) {
	for _, u := range []string{"alice", "bob", "carol"} {
		MustEnqueue(t, s, NewEvent(tokenbroker.EventLinkRecovered, u, "github"))
	}
	ds := mustClaim(t, s, "r1", time.Minute, 3)
	for i, d := range ds {
		ep := "crm"
		if i == 2 {
			ep = "pager"
		}
		if r, err := s.RouteDelivery(ctx(t), d, []string{ep}); err != nil || len(r) != 1 {
			t.Fatalf("RouteDelivery = %v, %v", r, err)
		}
	}
	routed := mustClaim(t, s, "r1", time.Minute, 3) // routed rows, in routing order
	for i, d := range routed {
		ok, err := s.KillDelivery(ctx(t), d, 410+i, "gone")
		wantBool(t, "KillDelivery", ok, err, true)
	}
	if again := mustClaim(t, s, "r2", -time.Millisecond, 10); len(again) != 0 {
		t.Fatalf("a dead letter was claimed: %+v", again[0])
	}
	if st := mustStats(t, s); st.Pending != 0 || st.Dead != 3 || !st.OldestPending.IsZero() {
		t.Fatalf("OutboxStats = %+v; want 3 dead, none pending", st)
	}
	all, err := s.ListDeadLetters(ctx(t), tokenbroker.DeadLetterFilter{})
	if err != nil || len(all) != 3 {
		t.Fatalf("ListDeadLetters = %d, %v; want 3", len(all), err)
	}
	newest := all[0]
	if newest.ID != routed[2].ID || newest.Status != tokenbroker.DeliveryDead || newest.DeadAt.IsZero() ||
		newest.LastStatus != 412 || newest.LastError != "gone" || newest.Endpoint != "pager" ||
		newest.Event.UserID != "carol" || newest.LeaseOwner != "" {
		t.Fatalf("newest dead letter = %+v", newest)
	}
	crm, err := s.ListDeadLetters(ctx(t), tokenbroker.DeadLetterFilter{Endpoint: "crm"})
	if err != nil || len(crm) != 2 {
		t.Fatalf("ListDeadLetters(crm) = %d, %v; want 2", len(crm), err)
	}
	page, err := s.ListDeadLetters(ctx(t), tokenbroker.DeadLetterFilter{BeforeID: all[0].ID, Limit: 1})
	if err != nil || len(page) != 1 || page[0].ID != all[1].ID {
		t.Fatalf("ListDeadLetters(before %d, limit 1) = %v, %v; want %d", all[0].ID, page, err, all[1].ID)
	}
}

func testOutboxComplete(t *testing.T, s tokenbroker.Store) {
	MustEnqueue(t, s, NewEvent(tokenbroker.EventLinkCreated, "alice", "github"))
	d := mustClaim(t, s, "r1", time.Minute, 1)[0]
	if routed, err := s.RouteDelivery(ctx(t), d, []string{"crm"}); err != nil || len(routed) != 1 {
		t.Fatalf("RouteDelivery = %v, %v", routed, err)
	}
	routed := mustClaim(t, s, "r1", time.Minute, 1)
	ok, err := s.CompleteDelivery(ctx(t), routed[0])
	wantBool(t, "CompleteDelivery", ok, err, true)
	ok, err = s.CompleteDelivery(ctx(t), routed[0])
	wantBool(t, "CompleteDelivery twice", ok, err, false)
	if st := mustStats(t, s); st.Pending != 0 || st.Dead != 0 {
		t.Fatalf("OutboxStats = %+v; want an empty outbox", st)
	}
}

func sameEvent(a, b tokenbroker.Event) bool {
	return a.ID == b.ID && a.Type == b.Type && a.Time.Equal(b.Time) && a.UserID == b.UserID &&
		a.ProviderID == b.ProviderID && a.Reason == b.Reason && a.Detail == b.Detail
}

func testOutboxRetryDeadLetter(t *testing.T, s tokenbroker.Store) {
	MustEnqueue(t, s, NewEvent(tokenbroker.EventLinkRecovered, "alice", "github"))
	d := mustClaim(t, s, "r1", time.Minute, 1)[0]
	if _, err := s.RetryDeadLetter(ctx(t), d.ID); tokenbroker.ErrorCode(err) != tokenbroker.ENOTFOUND {
		t.Fatalf("RetryDeadLetter of a pending delivery = %v; want not found", err)
	}
	ok, err := s.KillDelivery(ctx(t), d, 500, "boom")
	wantBool(t, "KillDelivery", ok, err, true)
	before := MustNow(t, s).Add(-time.Second)
	r, err := s.RetryDeadLetter(ctx(t), d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != d.ID || r.Status != tokenbroker.DeliveryPending || r.Attempts != 0 || !r.DeadAt.IsZero() ||
		r.CreatedAt.Before(before) || r.LastStatus != 500 {
		t.Fatalf("retried dead letter = %+v; want pending, attempts 0, a new window, the last answer kept", r)
	}
	again := mustClaim(t, s, "r2", time.Minute, 1)
	if len(again) != 1 || again[0].ID != d.ID || again[0].Attempts != 1 {
		t.Fatalf("claim after RetryDeadLetter = %+v", again)
	}
	if _, err := s.RetryDeadLetter(ctx(t), 1<<40); tokenbroker.ErrorCode(err) != tokenbroker.ENOTFOUND {
		t.Fatalf("RetryDeadLetter(missing) = %v; want not found", err)
	}
}
