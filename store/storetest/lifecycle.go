package storetest

import (
	"slices"
	"testing"
	"time"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

// lifecycleTests cover the link states beyond active and reauth_required,
// the webhook events written with state changes, last use and the state
// counts.
var lifecycleTests = []conformanceTest{
	{"EventsWrittenOnlyWithTheChange", testEventsWithChange},
	{"PutLinkEventOfTheReplacedState", testPutLinkEvents},
	{"DegradedAndIdleLinksRefreshAndRecover", testDegradedIdleRefresh},
	{"MarkLinkIdleConditions", testMarkLinkIdle},
	{"RecordLinkUse", testRecordLinkUse},
	{"ListStaleLinks", testListStaleLinks},
	{"ListLinksExpiringBeforeStates", testListLinksExpiringStates},
	{"CountLinksByStateFollowsEveryWrite", testCountLinksByState},
	{"ProviderHealthRecordsTransitionsOnce", testProviderHealthRecords},
}

// MustEvents claims and returns the events written to the outbox since the
// last call, in order (it leases them to the test for an hour).
func MustEvents(t testing.TB, s tokenbroker.Store) []tokenbroker.Event {
	t.Helper()
	ds, err := s.ClaimDeliveries(t.Context(), "storetest-events", time.Hour, 1000)
	if err != nil {
		t.Fatalf("ClaimDeliveries: %v", err)
	}
	out := make([]tokenbroker.Event, len(ds))
	for i, d := range ds {
		out[i] = d.Event
	}
	return out
}

// eventKinds lists "type/user/reason" of events.
func eventKinds(evs []tokenbroker.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = string(e.Type) + "/" + e.UserID + "/" + e.Reason
	}
	return out
}

func wantEvents(t *testing.T, s tokenbroker.Store, what string, want ...string) {
	t.Helper()
	got := eventKinds(MustEvents(t, s))
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s: events %q, want %q", what, got, want)
	}
}

func linkEvent(typ tokenbroker.EventType, reason string) tokenbroker.Record {
	return tokenbroker.Record{Events: []tokenbroker.Event{{Type: typ, UserID: "alice", ProviderID: "github", Reason: reason}}}
}

func testEventsWithChange(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	wantEvents(t, s, "a new link", "link.created/alice/")
	lease := MustAcquire(t, s, l, "a", time.Minute)
	stale := lease
	stale.Epoch--
	// Lost writes write no event.
	if ok, err := s.CommitRefresh(c, stale, refreshed(l, 2), linkEvent(tokenbroker.EventLinkRecovered, "x")); err != nil || ok {
		t.Fatalf("CommitRefresh(stale) = %v, %v", ok, err)
	}
	if ok, err := s.ReleaseLease(c, stale, tokenbroker.Release{Class: tokenbroker.FailureNotProcessed, Degrade: true}, linkEvent(tokenbroker.EventLinkDegraded, "x")); err != nil || ok {
		t.Fatalf("ReleaseLease(stale) = %v, %v", ok, err)
	}
	if ok, err := s.MarkReauthRequired(c, stale, tokenbroker.Reauth{Reason: tokenbroker.ReasonRevoked}, linkEvent(tokenbroker.EventLinkReauthRequired, "x")); err != nil || ok {
		t.Fatalf("MarkReauthRequired(stale) = %v, %v", ok, err)
	}
	wantEvents(t, s, "lost writes")

	// Won writes write theirs, and only theirs (an event-only record is
	// enough to make the write transactional).
	ok, err := s.ReleaseLease(c, lease, tokenbroker.Release{Class: tokenbroker.FailureNotProcessed}, linkEvent(tokenbroker.EventLinkDegraded, "not_processed"))
	wantBool(t, "ReleaseLease", ok, err, true)
	wantEvents(t, s, "a release", "link.degraded/alice/not_processed")
	lease = MustAcquire(t, s, l, "a", time.Minute)
	ok, err = s.CommitRefresh(c, lease, refreshed(l, 2), linkEvent(tokenbroker.EventLinkRecovered, "degraded"))
	wantBool(t, "CommitRefresh", ok, err, true)
	wantEvents(t, s, "a commit", "link.recovered/alice/degraded")
	cur := MustGetLink(t, s, "alice", "github")
	ok, err = s.MarkReauthRequired(c, MustAcquire(t, s, cur, "a", time.Minute), tokenbroker.Reauth{Reason: tokenbroker.ReasonRevoked},
		linkEvent(tokenbroker.EventLinkReauthRequired, "revoked"))
	wantBool(t, "MarkReauthRequired", ok, err, true)
	wantEvents(t, s, "a mark", "link.reauth_required/alice/revoked")
	if err := s.DeleteLink(c, "alice", "github", linkEvent(tokenbroker.EventLinkDeleted, "")); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, s, "a delete", "link.deleted/alice/")
	if err := s.DeleteLink(c, "alice", "github", linkEvent(tokenbroker.EventLinkDeleted, "")); !tokenbroker.IsNotFound(err) {
		t.Fatalf("DeleteLink(missing) = %v, want not found", err)
	}
	wantEvents(t, s, "a delete of nothing")

	// An event that cannot be written undoes the change with it.
	l = mustLink(t, s)
	MustEvents(t, s)
	bad := tokenbroker.Record{Events: []tokenbroker.Event{{Type: "link.exploded", ProviderID: "github"}}}
	_, err = s.CommitRefresh(c, MustAcquire(t, s, l, "a", time.Minute), refreshed(l, 3), bad)
	wantCode(t, err, tokenbroker.EINVALID)
	if got := MustGetLink(t, s, "alice", "github"); got.Generation != l.Generation {
		t.Fatalf("a commit whose event failed moved the generation %d -> %d", l.Generation, got.Generation)
	}
	if _, err := s.PutLink(c, NewLink("bob", "github", l.Token.Expiry), bad); tokenbroker.ErrorCode(err) != tokenbroker.EINVALID {
		t.Fatalf("PutLink with a bad event = %v, want invalid", err)
	}
	if _, err := s.GetLink(c, "bob", "github"); !tokenbroker.IsNotFound(err) {
		t.Fatalf("a PutLink whose event failed left a link: %v", err)
	}
	wantEvents(t, s, "failed writes")
}

func testPutLinkEvents(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	exp := MustNow(t, s).Add(time.Hour)
	put := func() *tokenbroker.Link { return MustPutLink(t, s, NewLink("alice", "github", exp)) }
	put()
	wantEvents(t, s, "a new link", "link.created/alice/")
	put()
	wantEvents(t, s, "a reconnect of an active link")

	// Broken, then connected again: a recovery.
	l := MustGetLink(t, s, "alice", "github")
	ok, err := s.MarkReauthRequired(c, MustAcquire(t, s, l, "a", time.Minute), tokenbroker.Reauth{Reason: tokenbroker.ReasonRevoked}, tokenbroker.Record{})
	wantBool(t, "MarkReauthRequired", ok, err, true)
	if got := put(); got.State != tokenbroker.LinkActive {
		t.Fatalf("reconnected link is %s", got.State)
	}
	wantEvents(t, s, "a reconnect after reauth_required", "link.recovered/alice/reauth_required")

	// Degraded, then connected again: a recovery.
	l = MustGetLink(t, s, "alice", "github")
	ok, err = s.ReleaseLease(c, MustAcquire(t, s, l, "a", time.Minute), tokenbroker.Release{Class: tokenbroker.FailureUncertain, Degrade: true}, tokenbroker.Record{})
	wantBool(t, "ReleaseLease(degrade)", ok, err, true)
	put()
	wantEvents(t, s, "a reconnect of a degraded link", "link.recovered/alice/degraded")

	// Idle, then connected again: nothing to tell.
	l = MustGetLink(t, s, "alice", "github")
	ok, err = s.MarkLinkIdle(c, l.ID, l.Generation, MustNow(t, s).Add(time.Hour), tokenbroker.Record{})
	wantBool(t, "MarkLinkIdle", ok, err, true)
	put()
	wantEvents(t, s, "a reconnect of an idle link")

	// Deleted, then connected again: a new link.
	if err := s.DeleteLink(c, "alice", "github", tokenbroker.Record{}); err != nil {
		t.Fatal(err)
	}
	put()
	wantEvents(t, s, "a connect after a delete", "link.created/alice/")
	// The caller's own record comes along.
	if _, err := s.PutLink(c, NewLink("bob", "github", exp), linkEvent(tokenbroker.EventLinkDegraded, "mine")); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, s, "a new link with a record", "link.degraded/alice/mine", "link.created/bob/")
}

func testReleaseDegrades(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	// Degrade without a failure class changes nothing.
	ok, err := s.ReleaseLease(c, MustAcquire(t, s, l, "a", time.Minute), tokenbroker.Release{Degrade: true}, tokenbroker.Record{})
	wantBool(t, "ReleaseLease(no class)", ok, err, true)
	if got := MustGetLink(t, s, "alice", "github"); got.State != tokenbroker.LinkActive {
		t.Fatalf("a release without a failure made the link %s", got.State)
	}
	ok, err = s.ReleaseLease(c, MustAcquire(t, s, l, "a", time.Minute), tokenbroker.Release{Class: tokenbroker.FailureNotProcessed, Error: "refused"}, tokenbroker.Record{})
	wantBool(t, "ReleaseLease", ok, err, true)
	if got := MustGetLink(t, s, "alice", "github"); got.State != tokenbroker.LinkActive || got.Failures != 1 {
		t.Fatalf("a failure without Degrade: %+v", got)
	}
	ok, err = s.ReleaseLease(c, MustAcquire(t, s, l, "a", time.Minute), tokenbroker.Release{Class: tokenbroker.FailureNotProcessed, Error: "refused", Degrade: true}, tokenbroker.Record{})
	wantBool(t, "ReleaseLease(degrade)", ok, err, true)
	got := MustGetLink(t, s, "alice", "github")
	if got.State != tokenbroker.LinkDegraded || got.Failures != 2 || got.Token.AccessToken != l.Token.AccessToken {
		t.Fatalf("after the degrading release: %+v", got)
	}
	// A reauth_required link is never degraded.
	ok, err = s.MarkReauthRequired(c, MustAcquire(t, s, got, "a", time.Minute), tokenbroker.Reauth{Reason: tokenbroker.ReasonRevoked}, tokenbroker.Record{})
	wantBool(t, "MarkReauthRequired(degraded)", ok, err, true)
	if got := MustGetLink(t, s, "alice", "github"); got.State != tokenbroker.LinkReauthRequired {
		t.Fatalf("a degraded link marked: %s", got.State)
	}
}

func testAcquireReportsState(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	g := Acquire(t, s, l, "a", time.Minute)
	if !g.Won || g.State != tokenbroker.LinkActive || !g.FailingSince.IsZero() {
		t.Fatalf("first acquisition = %+v; want won, active, not failing", g)
	}
	ok, err := s.ReleaseLease(c, g.Lease, tokenbroker.Release{Class: tokenbroker.FailureUncertain, Degrade: true}, tokenbroker.Record{})
	wantBool(t, "ReleaseLease", ok, err, true)
	cur := MustGetLink(t, s, "alice", "github")
	g = Acquire(t, s, l, "b", time.Minute)
	if !g.Won || g.State != tokenbroker.LinkDegraded || !g.FailingSince.Equal(cur.FailingSince) || g.FailingSince.IsZero() {
		t.Fatalf("acquisition of a degraded link = %+v; want won, degraded, failing since %v", g, cur.FailingSince)
	}
	// A lost acquisition reports them too.
	lost := Acquire(t, s, l, "c", time.Minute)
	if lost.Won || lost.State != tokenbroker.LinkDegraded || !lost.FailingSince.Equal(cur.FailingSince) {
		t.Fatalf("lost acquisition = %+v", lost)
	}
}

func testDegradedIdleRefresh(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	ok, err := s.ReleaseLease(c, MustAcquire(t, s, l, "a", time.Minute), tokenbroker.Release{Class: tokenbroker.FailureNotProcessed, Degrade: true}, tokenbroker.Record{})
	wantBool(t, "ReleaseLease(degrade)", ok, err, true)
	// A degraded link is refreshed like an active one; the commit makes
	// it active again.
	MustRefresh(t, s, l, 2)
	got := MustGetLink(t, s, "alice", "github")
	if got.State != tokenbroker.LinkActive || got.Failures != 0 || !got.FailingSince.IsZero() {
		t.Fatalf("after a degraded link's refresh: %+v", got)
	}
	// So is an idle one.
	ok, err = s.MarkLinkIdle(c, got.ID, got.Generation, MustNow(t, s).Add(time.Hour), tokenbroker.Record{})
	wantBool(t, "MarkLinkIdle", ok, err, true)
	idle := MustGetLink(t, s, "alice", "github")
	if idle.State != tokenbroker.LinkIdle {
		t.Fatalf("after MarkLinkIdle: %s", idle.State)
	}
	MustRefresh(t, s, idle, 3)
	if got := MustGetLink(t, s, "alice", "github"); got.State != tokenbroker.LinkActive || got.Generation != idle.Generation+1 {
		t.Fatalf("after an idle link's refresh: %+v", got)
	}
}

func testMarkLinkIdle(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	future := MustNow(t, s).Add(time.Hour)
	// Used since the cut-off (connecting counts as a use): not idle.
	ok, err := s.MarkLinkIdle(c, l.ID, l.Generation, l.LastUsedAt.Add(-time.Second), tokenbroker.Record{})
	wantBool(t, "MarkLinkIdle(used since)", ok, err, false)
	if l.LastUsedAt.IsZero() {
		t.Fatal("PutLink did not set last_used_at")
	}
	// An old generation: not idle.
	ok, err = s.MarkLinkIdle(c, l.ID, l.Generation-1, future, tokenbroker.Record{})
	wantBool(t, "MarkLinkIdle(old generation)", ok, err, false)
	// A lease is held: not idle.
	lease := MustAcquire(t, s, l, "a", time.Minute)
	ok, err = s.MarkLinkIdle(c, l.ID, l.Generation, future, tokenbroker.Record{})
	wantBool(t, "MarkLinkIdle(leased)", ok, err, false)
	ok, err = s.ReleaseLease(c, lease, tokenbroker.Release{}, tokenbroker.Record{})
	wantBool(t, "ReleaseLease", ok, err, true)
	rec := tokenbroker.Record{Audit: []tokenbroker.AuditEvent{{Actor: "r", Action: tokenbroker.AuditLinkIdle, UserID: "alice", ProviderID: "github"}}}
	ok, err = s.MarkLinkIdle(c, l.ID, l.Generation, future, rec)
	wantBool(t, "MarkLinkIdle", ok, err, true)
	if evs, err := s.ListAudit(c, tokenbroker.AuditFilter{Action: tokenbroker.AuditLinkIdle}); err != nil || len(evs) != 1 {
		t.Fatalf("idle audit events = %v, %v; want the record's one", evs, err)
	}
	// Already idle: nothing more.
	ok, err = s.MarkLinkIdle(c, l.ID, l.Generation, future, rec)
	wantBool(t, "MarkLinkIdle(idle)", ok, err, false)
	// A broken link is not made idle.
	b := MustPutLink(t, s, NewLink("bob", "github", future))
	ok, err = s.MarkReauthRequired(c, MustAcquire(t, s, b, "a", time.Minute), tokenbroker.Reauth{Reason: tokenbroker.ReasonRevoked}, tokenbroker.Record{})
	wantBool(t, "MarkReauthRequired", ok, err, true)
	ok, err = s.MarkLinkIdle(c, b.ID, b.Generation, future, tokenbroker.Record{})
	wantBool(t, "MarkLinkIdle(reauth_required)", ok, err, false)
}

func testRecordLinkUse(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	exp := MustNow(t, s).Add(time.Hour)
	a := MustPutLink(t, s, NewLink("alice", "github", exp))
	b := MustPutLink(t, s, NewLink("bob", "github", exp))
	ok, err := s.MarkLinkIdle(c, b.ID, b.Generation, MustNow(t, s).Add(time.Hour), tokenbroker.Record{})
	wantBool(t, "MarkLinkIdle", ok, err, true)
	waitPastStore(t, s, b.LastUsedAt)
	keys := []tokenbroker.LinkKey{{UserID: "alice", ProviderID: "github"}, {UserID: "bob", ProviderID: "github"}, {UserID: "nobody", ProviderID: "github"}}
	if err := s.RecordLinkUse(c, keys); err != nil {
		t.Fatal(err)
	}
	ga, gb := MustGetLink(t, s, "alice", "github"), MustGetLink(t, s, "bob", "github")
	if !ga.LastUsedAt.After(a.LastUsedAt) || !gb.LastUsedAt.After(b.LastUsedAt) {
		t.Fatalf("last used %v -> %v and %v -> %v; want both later", a.LastUsedAt, ga.LastUsedAt, b.LastUsedAt, gb.LastUsedAt)
	}
	if ga.State != tokenbroker.LinkActive || gb.State != tokenbroker.LinkActive || gb.Generation != b.Generation {
		t.Fatalf("after a use: alice %s, bob %s (gen %d -> %d); want both active, nothing else changed", ga.State, gb.State, b.Generation, gb.Generation)
	}
	if err := s.RecordLinkUse(c, nil); err != nil {
		t.Fatal(err)
	}
}

// waitPastStore waits until the store's clock is past at (millisecond
// resolution); there is no event to wait for.
func waitPastStore(t *testing.T, s tokenbroker.Store, at time.Time) {
	t.Helper()
	for !MustNow(t, s).After(at.Add(time.Millisecond)) {
		time.Sleep(time.Millisecond)
	}
}

func testListStaleLinks(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	exp := MustNow(t, s).Add(time.Hour)
	first := MustPutLink(t, s, NewLink("u1", "google", exp))
	waitPastStore(t, s, first.RefreshedAt)
	second := MustPutLink(t, s, NewLink("u2", "google", exp))
	waitPastStore(t, s, second.RefreshedAt)
	idle := MustPutLink(t, s, NewLink("u3", "google", exp))
	ok, err := s.MarkLinkIdle(c, idle.ID, idle.Generation, MustNow(t, s).Add(time.Hour), tokenbroker.Record{})
	wantBool(t, "MarkLinkIdle", ok, err, true)
	MustPutLink(t, s, NewLink("u1", "github", exp))
	cut := MustNow(t, s).Add(time.Millisecond)
	waitPastStore(t, s, cut)
	MustPutLink(t, s, NewLink("u4", "google", exp)) // after the cut

	names := func(q tokenbroker.StaleLinkQuery) []string {
		t.Helper()
		links, err := s.ListStaleLinks(c, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range links {
			out = append(out, l.UserID+"/"+l.ProviderID)
		}
		return out
	}
	live := []tokenbroker.LinkState{tokenbroker.LinkActive, tokenbroker.LinkDegraded}
	if got, want := names(tokenbroker.StaleLinkQuery{ProviderID: "google", States: live, RefreshedBefore: cut, Limit: 10}), []string{"u1/google", "u2/google"}; !slices.Equal(got, want) {
		t.Fatalf("stale active links = %v, want %v", got, want)
	}
	if got, want := names(tokenbroker.StaleLinkQuery{ProviderID: "google", States: live, RefreshedBefore: cut, Limit: 1}), []string{"u1/google"}; !slices.Equal(got, want) {
		t.Fatalf("stale active links (limit 1) = %v, want %v", got, want)
	}
	if got, want := names(tokenbroker.StaleLinkQuery{ProviderID: "google", States: []tokenbroker.LinkState{tokenbroker.LinkIdle}, RefreshedBefore: cut, Limit: 10}), []string{"u3/google"}; !slices.Equal(got, want) {
		t.Fatalf("stale idle links = %v, want %v", got, want)
	}
	if got := names(tokenbroker.StaleLinkQuery{ProviderID: "google", States: live, RefreshedBefore: first.RefreshedAt, Limit: 10}); len(got) != 0 {
		t.Fatalf("links refreshed before the first = %v, want none", got)
	}
	// A link without a refresh token cannot be kept alive: it is left out.
	noRT := NewLink("u5", "gitlab", exp)
	noRT.Token.RefreshToken = ""
	MustPutLink(t, s, noRT)
	waitPastStore(t, s, MustNow(t, s))
	if got := names(tokenbroker.StaleLinkQuery{ProviderID: "gitlab", States: live, RefreshedBefore: MustNow(t, s), Limit: 10}); len(got) != 0 {
		t.Fatalf("stale links without a refresh token = %v, want none", got)
	}
}

func testListLinksExpiringStates(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	now := MustNow(t, s).Truncate(time.Second)
	soon := now.Add(time.Minute)
	MustPutLink(t, s, NewLink("active", "p", soon))
	d := MustPutLink(t, s, NewLink("degraded", "p", soon.Add(time.Second)))
	ok, err := s.ReleaseLease(c, MustAcquire(t, s, d, "a", time.Minute), tokenbroker.Release{Class: tokenbroker.FailureUncertain, Degrade: true}, tokenbroker.Record{})
	wantBool(t, "ReleaseLease(degrade)", ok, err, true)
	i := MustPutLink(t, s, NewLink("idle", "p", soon.Add(2*time.Second)))
	ok, err = s.MarkLinkIdle(c, i.ID, i.Generation, MustNow(t, s).Add(time.Hour), tokenbroker.Record{})
	wantBool(t, "MarkLinkIdle", ok, err, true)
	links, err := s.ListLinksExpiringBefore(c, now.Add(5*time.Minute), tokenbroker.ExpiryCursor{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range links {
		got = append(got, l.UserID)
	}
	if want := []string{"active", "degraded"}; !slices.Equal(got, want) {
		t.Fatalf("ListLinksExpiringBefore = %v, want %v (idle links are left to expire)", got, want)
	}
	// Pages: after the first, the second; after the second, none; links
	// with the same expiry page by id.
	same := MustPutLink(t, s, NewLink("same", "p", soon))
	var pages []string
	after := tokenbroker.ExpiryCursor{}
	for {
		page, err := s.ListLinksExpiringBefore(c, now.Add(5*time.Minute), after, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		pages = append(pages, page[0].UserID)
		after = tokenbroker.ExpiryCursor{Expiry: page[0].Token.Expiry, ID: page[0].ID}
	}
	if want := []string{"active", "same", "degraded"}; !slices.Equal(pages, want) || same.ID < d.ID {
		t.Fatalf("pages of one = %v, want %v", pages, want)
	}
}

func testCountLinksByState(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	counts := func() map[string]int64 {
		t.Helper()
		cs, err := s.CountLinksByState(c)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		for _, x := range cs {
			out[x.ProviderID+"/"+string(x.State)] = x.Count
		}
		return out
	}
	want := func(what string, w map[string]int64) {
		t.Helper()
		if got := counts(); !mapsEqual(got, w) {
			t.Fatalf("%s: counts %v, want %v", what, got, w)
		}
	}
	want("empty", map[string]int64{})
	exp := MustNow(t, s).Add(time.Hour)
	MustPutLink(t, s, NewLink("a", "github", exp))
	b := MustPutLink(t, s, NewLink("b", "github", exp))
	MustPutLink(t, s, NewLink("a", "google", exp))
	a := MustPutLink(t, s, NewLink("a", "github", exp)) // a reconnect moves nothing
	want("three links", map[string]int64{"github/active": 2, "google/active": 1})
	ok, err := s.ReleaseLease(c, MustAcquire(t, s, a, "r", time.Minute), tokenbroker.Release{Class: tokenbroker.FailureUncertain, Degrade: true}, tokenbroker.Record{})
	wantBool(t, "ReleaseLease(degrade)", ok, err, true)
	ok, err = s.MarkReauthRequired(c, MustAcquire(t, s, b, "r", time.Minute), tokenbroker.Reauth{Reason: tokenbroker.ReasonRevoked}, tokenbroker.Record{})
	wantBool(t, "MarkReauthRequired", ok, err, true)
	want("degraded and broken", map[string]int64{"github/degraded": 1, "github/reauth_required": 1, "google/active": 1})
	a = MustGetLink(t, s, "a", "github")
	MustRefresh(t, s, a, 2)
	MustPutLink(t, s, NewLink("b", "github", exp))
	want("recovered", map[string]int64{"github/active": 2, "google/active": 1})
	g := MustGetLink(t, s, "a", "google")
	ok, err = s.MarkLinkIdle(c, g.ID, g.Generation, MustNow(t, s).Add(time.Hour), tokenbroker.Record{})
	wantBool(t, "MarkLinkIdle", ok, err, true)
	want("idle", map[string]int64{"github/active": 2, "google/idle": 1})
	if err := s.RecordLinkUse(c, []tokenbroker.LinkKey{{UserID: "a", ProviderID: "google"}}); err != nil {
		t.Fatal(err)
	}
	want("used again", map[string]int64{"github/active": 2, "google/active": 1})
	if err := s.DeleteLink(c, "a", "github", tokenbroker.Record{}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteLink(c, "a", "google", tokenbroker.Record{}); err != nil {
		t.Fatal(err)
	}
	want("deleted", map[string]int64{"github/active": 1})
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func testProviderHealthRecords(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	rec := func(typ tokenbroker.EventType) tokenbroker.Record {
		return tokenbroker.Record{Events: []tokenbroker.Event{{Type: typ, ProviderID: "github", Reason: "r"}}}
	}
	f := tokenbroker.ProviderFailure{Threshold: 1, OpenFor: time.Hour, MaxOpenFor: time.Hour, Record: rec(tokenbroker.EventProviderMisconfigured)}
	// A transient failure (even one that opens the circuit) writes no
	// misconfiguration record.
	if _, opened, err := s.RecordProviderFailure(c, "github", f); err != nil || !opened {
		t.Fatalf("RecordProviderFailure = %v, %v", opened, err)
	}
	wantEvents(t, s, "a transient failure")
	// Success after a transient failure: no recovery record either.
	if _, err := s.RecordProviderSuccess(c, "github", rec(tokenbroker.EventProviderRecovered)); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, s, "a success after a transient failure")
	f.Misconfigured = "invalid_client"
	for range 3 {
		if _, _, err := s.RecordProviderFailure(c, "github", f); err != nil {
			t.Fatal(err)
		}
	}
	wantEvents(t, s, "three client failures", "provider.misconfigured//r")
	for range 2 {
		if _, err := s.RecordProviderSuccess(c, "github", rec(tokenbroker.EventProviderRecovered)); err != nil {
			t.Fatal(err)
		}
	}
	wantEvents(t, s, "two successes", "provider.recovered//r")
}
