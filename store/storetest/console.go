package storetest

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

// consoleTests cover [tokenbroker.ConsoleStore] and the audit filter by
// actor.
var consoleTests = []conformanceTest{
	{"ConsoleListPagesForwardAndBackward", testConsolePages},
	{"ConsoleListFilters", testConsoleFilters},
	{"ConsoleListRejectsBothCursors", testConsoleBothCursors},
	{"ConsoleGetLinkSummary", testConsoleGetSummary},
	{"ConsoleCountLinks", testConsoleCountLinks},
	{"ConsoleCountAudit", testConsoleCountAudit},
	{"ConsoleAdminSessions", testConsoleAdminSessions},
	{"ConsoleAdminSessionExpiries", testConsoleAdminSessionExpiries},
	{"ConsoleAPIKeyUsage", testConsoleAPIKeyUsage},
	{"AuditFilterActor", testAuditFilterActor},
}

// consoleFixture is a set of links in several providers, states and
// reasons, with user ids chosen so that prefixes and byte order matter.
type consoleFixture struct {
	all []*tokenbroker.LinkSummary // every link, in (user, provider) order
}

var fixtureReasons = []string{
	"invalid_grant: revoked by the user",
	"invalid_grant: expired",
	"bad_refresh_token",
	"lost refresh : holder died",
}

func mustConsoleFixture(t *testing.T, s tokenbroker.Store) *consoleFixture {
	t.Helper()
	c := ctx(t)
	exp := MustNow(t, s).Add(time.Hour)
	users := []string{"ab", "ab-c", "abc", "ac", "B", "a.b@x", "u1", "u10", "u2", "zz"}
	providers := []string{"github", "gitlab", "google"}
	i := 0
	for _, u := range users {
		for pi, p := range providers {
			if (i+pi)%4 == 3 {
				continue // not every user links every provider
			}
			l := NewLink(u, p, exp)
			l.AccountLogin = fmt.Sprintf("%s-login-%d", strings.ToLower(p[:2]), i)
			if i%5 == 0 {
				l.Token.RefreshToken = ""
			}
			put := MustPutLink(t, s, l)
			if i%3 == 1 {
				reason := fixtureReasons[i%len(fixtureReasons)]
				lease := MustAcquire(t, s, put, "fixture", time.Minute)
				typed := tokenbroker.ReasonRevoked
				if strings.HasPrefix(reason, "lost refresh") {
					typed = tokenbroker.ReasonLostRefresh
				}
				if ok, err := s.MarkReauthRequired(c, lease, tokenbroker.Reauth{Reason: typed, Detail: reason}, tokenbroker.Record{}); err != nil || !ok {
					t.Fatalf("MarkReauthRequired: %v, %v", ok, err)
				}
			}
			i++
		}
	}
	f := &consoleFixture{}
	for _, u := range users {
		links, err := s.ListLinks(c, u)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			f.all = append(f.all, summaryOf(l))
		}
	}
	slices.SortFunc(f.all, func(a, b *tokenbroker.LinkSummary) int {
		if c := strings.Compare(a.UserID, b.UserID); c != 0 {
			return c
		}
		return strings.Compare(a.ProviderID, b.ProviderID)
	})
	return f
}

// summaryOf is what a summary of l must say.
func summaryOf(l *tokenbroker.Link) *tokenbroker.LinkSummary {
	return &tokenbroker.LinkSummary{
		ID: l.ID, UserID: l.UserID, ProviderID: l.ProviderID, AccountID: l.AccountID,
		AccountLogin: l.AccountLogin, Scopes: l.Token.Scopes, Expiry: l.Token.Expiry,
		HasRefreshToken: l.Token.RefreshToken != "", Generation: l.Generation, State: l.State,
		ReauthReason: l.ReauthReason, FailureReason: l.FailureReason, Failures: l.Failures,
		FailingSince: l.FailingSince, LastError: l.LastError, NextAttemptAt: l.NextAttemptAt,
		LeaseOwner: l.LeaseOwner, LeaseUntil: l.LeaseUntil,
		CreatedAt: l.CreatedAt, UpdatedAt: l.UpdatedAt, RefreshedAt: l.RefreshedAt,
	}
}

func (f *consoleFixture) where(keep func(*tokenbroker.LinkSummary) bool) []*tokenbroker.LinkSummary {
	var out []*tokenbroker.LinkSummary
	for _, l := range f.all {
		if keep(l) {
			out = append(out, l)
		}
	}
	return out
}

func keys(links []*tokenbroker.LinkSummary) []string {
	out := make([]string, len(links))
	for i, l := range links {
		out[i] = l.UserID + "/" + l.ProviderID
	}
	return out
}

func sameSummaries(t *testing.T, what string, got, want []*tokenbroker.LinkSummary) {
	t.Helper()
	if !slices.Equal(keys(got), keys(want)) {
		t.Fatalf("%s:\n got  %v\n want %v", what, keys(got), keys(want))
	}
	for i := range got {
		g, w := *got[i], *want[i]
		for _, p := range []*tokenbroker.LinkSummary{&g, &w} {
			for _, tm := range []*time.Time{&p.Expiry, &p.LeaseUntil, &p.CreatedAt, &p.UpdatedAt, &p.RefreshedAt, &p.FailingSince, &p.NextAttemptAt} {
				if !tm.IsZero() {
					*tm = tm.UTC()
				}
			}
		}
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("%s: summary =\n%+v\nwant\n%+v", what, g, w)
		}
	}
}

// walk pages through q with the given page size, forward from the start,
// and checks that walking backward from the end gives the same pages.
func walk(t *testing.T, s tokenbroker.Store, q tokenbroker.LinkQuery, size int) []*tokenbroker.LinkSummary {
	t.Helper()
	c := ctx(t)
	q.Limit = size
	var all []*tokenbroker.LinkSummary
	for n := 0; ; n++ {
		if n > 1000 {
			t.Fatal("pagination does not end")
		}
		page, err := s.ListLinkSummaries(c, q)
		if err != nil {
			t.Fatalf("ListLinkSummaries(%+v): %v", q, err)
		}
		if len(page) > size {
			t.Fatalf("page of %d links, limit %d", len(page), size)
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		last := page[len(page)-1]
		q.After = &tokenbroker.LinkCursor{UserID: last.UserID, ProviderID: last.ProviderID}
	}
	// Backward: from after the last link, the Before pages, put back in
	// order, must be the same links.
	q.After = nil
	if len(all) > 0 {
		last := all[len(all)-1]
		q.Before = &tokenbroker.LinkCursor{UserID: last.UserID + "\x7f", ProviderID: ""}
		var back []*tokenbroker.LinkSummary
		for n := 0; ; n++ {
			if n > 1000 {
				t.Fatal("backward pagination does not end")
			}
			page, err := s.ListLinkSummaries(c, q)
			if err != nil {
				t.Fatalf("ListLinkSummaries(%+v): %v", q, err)
			}
			if len(page) == 0 {
				break
			}
			back = append(slices.Clone(page), back...)
			q.Before = &tokenbroker.LinkCursor{UserID: page[0].UserID, ProviderID: page[0].ProviderID}
		}
		if !slices.Equal(keys(back), keys(all)) {
			t.Fatalf("backward pages\n %v\nforward pages\n %v", keys(back), keys(all))
		}
	}
	return all
}

func testConsolePages(t *testing.T, s tokenbroker.Store) {
	f := mustConsoleFixture(t, s)
	for _, size := range []int{1, 4, 7, 1000} {
		got := walk(t, s, tokenbroker.LinkQuery{}, size)
		sameSummaries(t, fmt.Sprintf("all links, pages of %d", size), got, f.all)
	}
	// The default page size applies.
	page, err := s.ListLinkSummaries(ctx(t), tokenbroker.LinkQuery{})
	if err != nil || len(page) != min(50, len(f.all)) {
		t.Fatalf("default page: %d links, %v", len(page), err)
	}
}

func testConsoleFilters(t *testing.T, s tokenbroker.Store) {
	f := mustConsoleFixture(t, s)
	type L = tokenbroker.LinkSummary
	for _, tt := range []struct {
		name string
		q    tokenbroker.LinkQuery
		keep func(*L) bool
	}{
		{"provider", tokenbroker.LinkQuery{ProviderID: "gitlab"}, func(l *L) bool { return l.ProviderID == "gitlab" }},
		{"state", tokenbroker.LinkQuery{State: tokenbroker.LinkReauthRequired}, func(l *L) bool { return l.State == tokenbroker.LinkReauthRequired }},
		{"provider and state", tokenbroker.LinkQuery{ProviderID: "github", State: tokenbroker.LinkActive},
			func(l *L) bool { return l.ProviderID == "github" && l.State == tokenbroker.LinkActive }},
		{"typed reason", tokenbroker.LinkQuery{ReauthReason: tokenbroker.ReasonLostRefresh},
			func(l *L) bool { return l.ReauthReason == tokenbroker.ReasonLostRefresh }},
		{"typed reason and provider", tokenbroker.LinkQuery{ReauthReason: tokenbroker.ReasonRevoked, ProviderID: "github"},
			func(l *L) bool { return l.ReauthReason == tokenbroker.ReasonRevoked && l.ProviderID == "github" }},
		{"reason code", tokenbroker.LinkQuery{ReasonCode: "invalid_grant"},
			func(l *L) bool { return strings.HasPrefix(l.FailureReason, "invalid_grant:") }},
		{"reason code without description", tokenbroker.LinkQuery{ReasonCode: "bad_refresh_token"},
			func(l *L) bool { return l.FailureReason == "bad_refresh_token" }},
		{"reason code with a space before the colon", tokenbroker.LinkQuery{ReasonCode: "lost refresh"},
			func(l *L) bool { return strings.HasPrefix(l.FailureReason, "lost refresh") }},
		{"reason code matches no part of a code", tokenbroker.LinkQuery{ReasonCode: "invalid"}, func(*L) bool { return false }},
		{"user prefix", tokenbroker.LinkQuery{UserPrefix: "ab"}, func(l *L) bool { return strings.HasPrefix(l.UserID, "ab") }},
		{"user prefix is case-sensitive", tokenbroker.LinkQuery{UserPrefix: "b"}, func(l *L) bool { return strings.HasPrefix(l.UserID, "b") }},
		{"user prefix u1", tokenbroker.LinkQuery{UserPrefix: "u1"}, func(l *L) bool { return strings.HasPrefix(l.UserID, "u1") }},
		{"whole user id", tokenbroker.LinkQuery{UserPrefix: "a.b@x"}, func(l *L) bool { return l.UserID == "a.b@x" }},
		{"account login", tokenbroker.LinkQuery{AccountLogin: "gi-login-1"}, func(l *L) bool { return l.AccountLogin == "gi-login-1" }},
		{"account login is exact", tokenbroker.LinkQuery{AccountLogin: "gi-login"}, func(l *L) bool { return false }},
		{"scope users", tokenbroker.LinkQuery{LinkScope: tokenbroker.LinkScope{Users: []string{"u1", "zz"}}},
			func(l *L) bool { return l.UserID == "u1" || l.UserID == "zz" }},
		{"scope providers", tokenbroker.LinkQuery{LinkScope: tokenbroker.LinkScope{Providers: []string{"google"}}},
			func(l *L) bool { return l.ProviderID == "google" }},
		{"scope and filters", tokenbroker.LinkQuery{LinkScope: tokenbroker.LinkScope{Users: []string{"ab", "abc", "u2"}, Providers: []string{"github", "gitlab"}},
			UserPrefix: "ab", State: tokenbroker.LinkActive},
			func(l *L) bool {
				return (l.UserID == "ab" || l.UserID == "abc") && l.ProviderID != "google" && l.State == tokenbroker.LinkActive
			}},
		{"scope excludes a filtered provider", tokenbroker.LinkQuery{LinkScope: tokenbroker.LinkScope{Providers: []string{"google"}}, ProviderID: "github"},
			func(*L) bool { return false }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want := f.where(tt.keep)
			empty := tt.name == "reason code matches no part of a code" || tt.name == "account login is exact" || tt.name == "user prefix is case-sensitive" ||
				strings.HasPrefix(tt.name, "scope excludes")
			if !empty && len(want) == 0 {
				t.Fatalf("fixture has no link for %s", tt.name)
			}
			sameSummaries(t, tt.name, walk(t, s, tt.q, 3), want)
		})
	}
	_, err := s.ListLinkSummaries(ctx(t), tokenbroker.LinkQuery{UserPrefix: "\xff"})
	wantCode(t, err, tokenbroker.EINVALID)
}

func testConsoleBothCursors(t *testing.T, s tokenbroker.Store) {
	cur := &tokenbroker.LinkCursor{UserID: "a", ProviderID: "b"}
	_, err := s.ListLinkSummaries(ctx(t), tokenbroker.LinkQuery{After: cur, Before: cur})
	wantCode(t, err, tokenbroker.EINVALID)
}

func testConsoleGetSummary(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	MustAcquire(t, s, l, "replica-1", time.Minute)
	got, err := s.GetLinkSummary(c, "alice", "github")
	if err != nil {
		t.Fatal(err)
	}
	sameSummaries(t, "summary", []*tokenbroker.LinkSummary{got}, []*tokenbroker.LinkSummary{summaryOf(MustGetLink(t, s, "alice", "github"))})
	if got.LeaseOwner != "replica-1" || got.LeaseUntil.IsZero() || !got.HasRefreshToken {
		t.Fatalf("summary = %+v; want the lease and a refresh token", got)
	}
	_, err = s.GetLinkSummary(c, "alice", "gitlab")
	wantCode(t, err, tokenbroker.ENOTFOUND)
}

func testConsoleCountLinks(t *testing.T, s tokenbroker.Store) {
	f := mustConsoleFixture(t, s)
	for _, scope := range []tokenbroker.LinkScope{
		{},
		{Users: []string{"ab", "u1", "u10"}},
		{Providers: []string{"gitlab"}},
		{Users: []string{"abc", "zz"}, Providers: []string{"github", "google"}},
		{Users: []string{"nobody"}},
	} {
		want := map[tokenbroker.LinkCount]bool{}
		n := map[[4]string]int64{}
		for _, l := range f.all {
			if (len(scope.Users) > 0 && !slices.Contains(scope.Users, l.UserID)) ||
				(len(scope.Providers) > 0 && !slices.Contains(scope.Providers, l.ProviderID)) {
				continue
			}
			n[[4]string{l.ProviderID, string(l.State), string(l.ReauthReason), tokenbroker.ReasonCode(l.FailureReason)}]++
		}
		for k, v := range n {
			want[tokenbroker.LinkCount{ProviderID: k[0], State: tokenbroker.LinkState(k[1]), Reauth: tokenbroker.ReauthReason(k[2]), ReasonCode: k[3], Count: v}] = true
		}
		got, err := s.CountLinks(ctx(t), scope)
		if err != nil {
			t.Fatal(err)
		}
		gotSet := map[tokenbroker.LinkCount]bool{}
		for _, lc := range got {
			gotSet[lc] = true
		}
		if !reflect.DeepEqual(gotSet, want) {
			t.Fatalf("CountLinks(%+v) =\n%v\nwant\n%v", scope, got, want)
		}
	}
}

func testConsoleCountAudit(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	now := MustNow(t, s).Truncate(time.Millisecond)
	ev := func(ago time.Duration, action, user, provider string) tokenbroker.AuditEvent {
		return tokenbroker.AuditEvent{Time: now.Add(-ago), Actor: "r1", Action: action, UserID: user, ProviderID: provider, Outcome: "ok"}
	}
	events := []tokenbroker.AuditEvent{
		ev(30*time.Hour, tokenbroker.AuditLinkRefresh, "u1", "github"), // before the window
		ev(23*time.Hour, tokenbroker.AuditLinkRefresh, "u1", "github"),
		ev(2*time.Hour, tokenbroker.AuditLinkRefresh, "u2", "github"),
		ev(30*time.Minute, tokenbroker.AuditLinkRefresh, "u1", "github"),
		ev(10*time.Minute, tokenbroker.AuditRefreshFailed, "u2", "github"),
		ev(5*time.Minute, tokenbroker.AuditLinkBroken, "u1", "gitlab"),
		ev(time.Minute, tokenbroker.AuditTokenRead, "u1", "github"), // not asked for
	}
	// Written out of time order, as batches from several replicas are.
	slices.Reverse(events[2:5])
	if err := s.AppendAudit(c, events); err != nil {
		t.Fatal(err)
	}
	q := tokenbroker.AuditCountQuery{
		Actions: []string{tokenbroker.AuditLinkRefresh, tokenbroker.AuditRefreshFailed, tokenbroker.AuditLinkBroken},
		Since:   now.Add(-24 * time.Hour), Recent: now.Add(-time.Hour),
	}
	got, err := s.CountAudit(c, q)
	if err != nil {
		t.Fatal(err)
	}
	want := []tokenbroker.AuditTally{
		{ProviderID: "github", Action: tokenbroker.AuditLinkRefresh, Recent: 1, Total: 3},
		{ProviderID: "github", Action: tokenbroker.AuditRefreshFailed, Recent: 1, Total: 1},
		{ProviderID: "gitlab", Action: tokenbroker.AuditLinkBroken, Recent: 1, Total: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("CountAudit =\n%+v\nwant\n%+v", got, want)
	}
	q.LinkScope = tokenbroker.LinkScope{Users: []string{"u2"}}
	got, err = s.CountAudit(c, q)
	want = []tokenbroker.AuditTally{
		{ProviderID: "github", Action: tokenbroker.AuditLinkRefresh, Recent: 0, Total: 1},
		{ProviderID: "github", Action: tokenbroker.AuditRefreshFailed, Recent: 1, Total: 1},
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("CountAudit for u2 = %+v, %v; want %+v", got, err, want)
	}
	q.LinkScope = tokenbroker.LinkScope{Providers: []string{"gitlab"}}
	got, err = s.CountAudit(c, q)
	if err != nil || len(got) != 1 || got[0].ProviderID != "gitlab" {
		t.Fatalf("CountAudit for gitlab = %+v, %v", got, err)
	}
	// A window with no event, and no actions at all.
	q = tokenbroker.AuditCountQuery{Actions: q.Actions, Since: now.Add(time.Hour), Recent: now.Add(time.Hour)}
	if got, err := s.CountAudit(c, q); err != nil || len(got) != 0 {
		t.Fatalf("CountAudit of the future = %+v, %v", got, err)
	}
	if got, err := s.CountAudit(c, tokenbroker.AuditCountQuery{Since: now.Add(-time.Hour)}); err != nil || len(got) != 0 {
		t.Fatalf("CountAudit without actions = %+v, %v", got, err)
	}
}

func mustAPIKey(t *testing.T, s tokenbroker.Store, prefix string) *tokenbroker.APIKey {
	t.Helper()
	k, err := s.CreateAPIKey(ctx(t), &tokenbroker.APIKey{Prefix: prefix, SecretHash: []byte("hash-" + prefix),
		Name: "console", Scopes: []string{tokenbroker.ScopeAdmin}, Users: []string{"u1"}})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testConsoleAdminSessions(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	k := mustAPIKey(t, s, "sessionkey01")
	now := MustNow(t, s)
	as := &tokenbroker.AdminSession{ID: "sess-1", KeyID: k.ID,
		IdleUntil: now.Add(30 * time.Minute).Truncate(time.Millisecond), ExpiresAt: now.Add(8 * time.Hour).Truncate(time.Millisecond)}
	if err := s.CreateAdminSession(c, as); err != nil {
		t.Fatal(err)
	}
	if as.CreatedAt.IsZero() {
		t.Fatal("CreatedAt not set")
	}
	wantCode(t, s.CreateAdminSession(c, as), tokenbroker.ECONFLICT)
	wantCode(t, s.CreateAdminSession(c, &tokenbroker.AdminSession{ID: "x", KeyID: k.ID + 100, IdleUntil: as.IdleUntil, ExpiresAt: as.ExpiresAt}), tokenbroker.ENOTFOUND)
	wantCode(t, s.CreateAdminSession(c, &tokenbroker.AdminSession{ID: "x", KeyID: k.ID}), tokenbroker.EINVALID)

	got, gotKey, err := s.GetAdminSession(c, "sess-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.KeyID != k.ID || !got.IdleUntil.Equal(as.IdleUntil) || !got.ExpiresAt.Equal(as.ExpiresAt) || !got.CreatedAt.Equal(as.CreatedAt) {
		t.Fatalf("session = %+v, want %+v", got, as)
	}
	if gotKey.ID != k.ID || gotKey.Prefix != k.Prefix || !slices.Equal(gotKey.Users, []string{"u1"}) || gotKey.Revoked() {
		t.Fatalf("session key = %+v", gotKey)
	}
	_, _, err = s.GetAdminSession(c, "sess-2")
	wantCode(t, err, tokenbroker.ENOTFOUND)

	// Touch moves the idle expiry, never past the absolute one.
	ok, err := s.TouchAdminSession(c, "sess-1", 24*time.Hour)
	wantBool(t, "TouchAdminSession", ok, err, true)
	got, _, err = s.GetAdminSession(c, "sess-1")
	if err != nil || !got.IdleUntil.Equal(as.ExpiresAt) {
		t.Fatalf("after touch: %+v, %v; want IdleUntil = ExpiresAt %v", got, err, as.ExpiresAt)
	}
	ok, err = s.TouchAdminSession(c, "sess-2", time.Hour)
	wantBool(t, "TouchAdminSession(missing)", ok, err, false)

	// The key's revocation shows through the session.
	if err := s.RevokeAPIKey(c, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, gotKey, err = s.GetAdminSession(c, "sess-1"); err != nil || !gotKey.Revoked() {
		t.Fatalf("after revocation: key %+v, %v", gotKey, err)
	}

	if err := s.DeleteAdminSession(c, "sess-1"); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.GetAdminSession(c, "sess-1")
	wantCode(t, err, tokenbroker.ENOTFOUND)
	if err := s.DeleteAdminSession(c, "sess-1"); err != nil {
		t.Fatalf("deleting a deleted session: %v", err)
	}
}

func testConsoleAdminSessionExpiries(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	k := mustAPIKey(t, s, "sessionkey02")
	now := MustNow(t, s)
	for _, as := range []*tokenbroker.AdminSession{
		{ID: "idle", KeyID: k.ID, IdleUntil: now.Add(-time.Second), ExpiresAt: now.Add(time.Hour)},
		{ID: "expired", KeyID: k.ID, IdleUntil: now.Add(time.Hour), ExpiresAt: now.Add(-time.Second)},
		{ID: "live", KeyID: k.ID, IdleUntil: now.Add(time.Hour), ExpiresAt: now.Add(2 * time.Hour)},
	} {
		if err := s.CreateAdminSession(c, as); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"idle", "expired"} {
		_, _, err := s.GetAdminSession(c, id)
		wantCode(t, err, tokenbroker.ENOTFOUND)
		ok, err := s.TouchAdminSession(c, id, time.Hour)
		wantBool(t, "TouchAdminSession("+id+")", ok, err, false)
	}
	n, err := s.DeleteExpiredAdminSessions(c)
	if err != nil || n != 2 {
		t.Fatalf("DeleteExpiredAdminSessions = %d, %v; want 2", n, err)
	}
	if _, _, err := s.GetAdminSession(c, "live"); err != nil {
		t.Fatalf("live session after cleanup: %v", err)
	}
}

func testConsoleAPIKeyUsage(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	k1 := mustAPIKey(t, s, "usagekey0001")
	k2 := mustAPIKey(t, s, "usagekey0002")
	usage, err := s.ListAPIKeyUsage(c)
	if err != nil || len(usage) != 0 {
		t.Fatalf("ListAPIKeyUsage before any use = %v, %v", usage, err)
	}
	if err := s.TouchAPIKeyUsage(c, k1.ID, time.Minute); err != nil {
		t.Fatal(err)
	}
	usage, err = s.ListAPIKeyUsage(c)
	first := usage[k1.ID]
	if err != nil || len(usage) != 1 || first.IsZero() {
		t.Fatalf("ListAPIKeyUsage = %v, %v", usage, err)
	}
	if d := MustNow(t, s).Sub(first); d < 0 || d > time.Minute {
		t.Fatalf("last use %v is %v from the database clock", first, d)
	}
	// Within every: no write. With a negative every: always a write, at
	// the database's time, never earlier.
	if err := s.TouchAPIKeyUsage(c, k1.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	if usage, _ = s.ListAPIKeyUsage(c); !usage[k1.ID].Equal(first) {
		t.Fatalf("a use within the interval moved last use from %v to %v", first, usage[k1.ID])
	}
	if err := s.TouchAPIKeyUsage(c, k1.ID, -time.Hour); err != nil {
		t.Fatal(err)
	}
	if usage, _ = s.ListAPIKeyUsage(c); usage[k1.ID].Before(first) {
		t.Fatalf("last use went back from %v to %v", first, usage[k1.ID])
	}
	// An unknown key records nothing and is no error.
	if err := s.TouchAPIKeyUsage(c, k2.ID+100, time.Minute); err != nil {
		t.Fatal(err)
	}
	if usage, _ = s.ListAPIKeyUsage(c); len(usage) != 1 {
		t.Fatalf("usage = %v; want only key %d", usage, k1.ID)
	}
}

func testAuditFilterActor(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	if err := s.AppendAudit(c, []tokenbroker.AuditEvent{
		{Actor: "key:aaa", Action: tokenbroker.AuditLinkDelete, UserID: "u1"},
		{Actor: "console:bbb", Action: tokenbroker.AuditLinkDelete, UserID: "u1"},
		{Actor: "key:aaa", Action: tokenbroker.AuditTokenRead, UserID: "u2"},
	}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListAudit(c, tokenbroker.AuditFilter{Actor: "key:aaa"})
	if err != nil || len(got) != 2 || got[0].UserID != "u2" || got[1].UserID != "u1" {
		t.Fatalf("ListAudit(actor) = %+v, %v", got, err)
	}
	got, err = s.ListAudit(c, tokenbroker.AuditFilter{Actor: "console:bbb", UserID: "u1"})
	if err != nil || len(got) != 1 || got[0].Actor != "console:bbb" {
		t.Fatalf("ListAudit(actor, user) = %+v, %v", got, err)
	}
}
