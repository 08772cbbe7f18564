package refresh_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/provider"
	"github.com/tokenbroker/tokenbroker/refresh"
)

// refresher returns a background refresher of replica i's coordinator c.
func (e *env) refresher(i int, c *refresh.Coordinator, mod func(*refresh.RefresherConfig)) *refresh.Refresher {
	e.t.Helper()
	cfg := refresh.RefresherConfig{Coordinator: c, Store: e.stores[i], Concurrency: 4, Batch: 7}
	if mod != nil {
		mod(&cfg)
	}
	r, err := refresh.NewRefresher(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(r.Close)
	return r
}

// scanAll runs one scan of every refresher at once.
func scanAll(rs ...*refresh.Refresher) {
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() { r.Scan(context.Background()) })
	}
	wg.Wait()
}

// TestRefresherRefreshesEachDueLinkOnce: three replicas' background
// refreshers scan at the same moment 30 links that have entered their
// refresh-ahead window (in pages smaller than the set); each link is
// refreshed exactly once (the lease), and callers then get the fresh token
// without a provider call. The lag is how long the most overdue link has
// been due.
func TestRefresherRefreshesEachDueLinkOnce(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "postgres", replicas: 3, refreshAhead: 10 * time.Minute})
	var (
		cs []*refresh.Coordinator
		rs []*refresh.Refresher
	)
	for i := range 3 {
		cs = append(cs, e.coordinator(i, nil, nil))
		rs = append(rs, e.refresher(i, cs[i], nil))
	}
	families := map[string]string{}
	for i := range 30 {
		u := fmt.Sprintf("u%02d", i)
		_, tok := e.seed(u)
		families[u] = tok.Family
	}
	e.clock.Advance(55 * time.Minute) // all inside the window (due at 50 min), still valid
	scanAll(rs...)

	st := e.idp.Stats()
	for u, fam := range families {
		if n := st.Families[fam].RefreshCalls; n != 1 {
			t.Errorf("%s: %d provider refresh calls, want exactly 1", u, n)
		}
		if l := e.link(u); l.Generation != 2 || l.State != tokenbroker.LinkActive {
			t.Errorf("%s after the scan: generation %d, %s; want 2, active", u, l.Generation, l.State)
		}
	}
	if st.ReuseDetections != 0 {
		t.Fatalf("reuse detections: %d", st.ReuseDetections)
	}
	for _, r := range rs {
		if s := r.Status(); s.Lag != 5*time.Minute || s.Due > 30 {
			t.Errorf("refresher status %+v; want lag 5m (the links were due 5 minutes ago)", s)
		}
	}
	calls := st.RefreshCalls
	for i, u := range []string{"u00", "u15", "u29"} {
		if _, err := cs[i].Token(context.Background(), providerID, u, 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.idp.Stats().RefreshCalls; n != calls {
		t.Fatalf("callers after the background refresh caused %d provider calls, want none", n-calls)
	}
	// Nothing is due any more: another scan calls nobody.
	scanAll(rs...)
	if n := e.idp.Stats().RefreshCalls; n != calls {
		t.Fatalf("a scan with nothing due made %d provider calls", n-calls)
	}
	if s := rs[0].Status(); s.Lag != 0 || s.Due != 0 {
		t.Fatalf("status with nothing due: %+v", s)
	}
}

// TestKeepAliveRefreshesUsedLinksAndLetsUnusedGo: with a keep-alive policy,
// a link still in use whose grant is older than the policy's keep-alive is
// refreshed once, across two replicas' scans, and not again by the next
// scan; a link nobody used since the idle cut-off is left alone (no call),
// marked idle, and, its provider's inactivity limit having passed, marked
// reauth_required (inactivity) with its webhook event. The database clock
// is read once and injected, so the cut-offs fall between the links
// whatever the test's pace.
func TestKeepAliveRefreshesUsedLinksAndLetsUnusedGo(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "postgres", replicas: 2})
	p := mustProviderWith(t, e, func(pc *provider.ProviderConfig) {
		ka, limit := provider.Duration(100*time.Millisecond), provider.Duration(150*time.Millisecond)
		pc.KeepAlive, pc.InactivityLimit = &ka, &limit
	})
	st := e.stores[0]
	unused, unusedTok := e.seed("unused")
	waitPast(t, st, unused.LastUsedAt.Add(200*time.Millisecond))
	used, usedTok := e.seed("used")
	waitPast(t, st, used.LastUsedAt.Add(200*time.Millisecond))
	now, err := st.Now(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// used counts as used, unused does not.
	idleAfter := now.Sub(unused.LastUsedAt.Add(used.LastUsedAt.Sub(unused.LastUsedAt) / 2))
	mod := func(cfg *refresh.RefresherConfig) {
		cfg.IdleAfter = idleAfter
		cfg.DatabaseNow = func(context.Context) (time.Time, error) { return now, nil }
	}
	rs := []*refresh.Refresher{e.refresher(0, e.coordinator(0, p, nil), mod), e.refresher(1, e.coordinator(1, p, nil), mod)}
	eventsOf(t, st) // the two link.created

	scanAll(rs...)
	stats := e.idp.Stats()
	if n := stats.Families[usedTok.Family].RefreshCalls; n != 1 {
		t.Fatalf("the used link's grant: %d refresh calls, want 1 (kept alive once)", n)
	}
	if n := stats.Families[unusedTok.Family].RefreshCalls; n != 0 {
		t.Fatalf("the unused link's grant: %d refresh calls, want none", n)
	}
	if l := e.link("used"); l.Generation != 2 || l.State != tokenbroker.LinkActive {
		t.Fatalf("used link after the scan: %+v", l)
	}
	// The unused link went idle, and, its tokens being older than the
	// provider's inactivity limit, then reauth_required.
	l := e.link("unused")
	if l.State != tokenbroker.LinkReauthRequired || l.ReauthReason != tokenbroker.ReasonInactivity || l.Generation != 1 {
		t.Fatalf("unused link after the scan: %s (%s), generation %d; want reauth_required (inactivity)", l.State, l.ReauthReason, l.Generation)
	}
	idled, err := st.ListAudit(context.Background(), tokenbroker.AuditFilter{Action: tokenbroker.AuditLinkIdle})
	if err != nil || len(idled) != 1 || idled[0].UserID != "unused" {
		t.Fatalf("link.idle audit events = %+v, %v; want the unused link's", idled, err)
	}
	// The next scan refreshes nothing: the used link's grant is new.
	scanAll(rs...)
	if n := e.idp.Stats().RefreshCalls; n != stats.RefreshCalls {
		t.Fatalf("the second scan made %d provider calls, want none", n-stats.RefreshCalls)
	}
	wantEventsOf(t, st, "keep-alive and inactivity", "link.reauth_required/unused/inactivity")
}

// TestRefresherMarksExpiredLinkWithoutRefreshToken: a link whose access
// token expired and that has no refresh token can never be refreshed: the
// refresher marks it reauth_required (no_refresh_token), with its event.
func TestRefresherMarksExpiredLinkWithoutRefreshToken(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "sqlite", idp: fakeidp.Config{}})
	c := e.coordinator(0, nil, nil)
	r := e.refresher(0, c, nil)
	l, err := e.stores[0].PutLink(context.Background(), &tokenbroker.Link{UserID: "u1", ProviderID: providerID,
		Token: tokenbroker.Token{AccessToken: "at", Expiry: e.clock.Now().Add(time.Minute)}}, tokenbroker.Record{})
	if err != nil {
		t.Fatal(err)
	}
	eventsOf(t, e.stores[0])
	r.Scan(context.Background())
	if got := e.link("u1"); got.State != tokenbroker.LinkActive {
		t.Fatalf("a still-valid token without a refresh token: %s", got.State)
	}
	e.clock.Advance(2 * time.Minute)
	r.Scan(context.Background())
	if got := e.link("u1"); got.State != tokenbroker.LinkReauthRequired || got.ReauthReason != tokenbroker.ReasonNoRefreshToken || got.Generation != l.Generation {
		t.Fatalf("after expiry: %+v", got)
	}
	wantEventsOf(t, e.stores[0], "an expired link without refresh token", "link.reauth_required/u1/no_refresh_token")
}

// TestRefresherScanDrainsBacklog: a scan reads at most 20 pages; when more
// links are due than that (a backlog: 45 due links in pages of one), the
// scan goes on with another pass once the first pass's refreshes end,
// instead of leaving the rest to the next scan an interval later. Each
// link is refreshed exactly once.
func TestRefresherScanDrainsBacklog(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "sqlite", refreshAhead: 10 * time.Minute})
	c := e.coordinator(0, nil, nil)
	r := e.refresher(0, c, func(cfg *refresh.RefresherConfig) { cfg.Batch = 1 })
	families := map[string]string{}
	for i := range 45 {
		u := fmt.Sprintf("u%02d", i)
		_, tok := e.seed(u)
		families[u] = tok.Family
	}
	e.clock.Advance(55 * time.Minute) // all inside the window, still valid
	r.Scan(context.Background())
	st := e.idp.Stats()
	for u, fam := range families {
		if n := st.Families[fam].RefreshCalls; n != 1 {
			t.Errorf("%s: %d provider refresh calls after one scan, want exactly 1", u, n)
		}
	}
}
