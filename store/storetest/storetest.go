package storetest

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tokenbroker "github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/await"
)

// conformanceTest is one test of the conformance suite, named for the rule
// it proves.
type conformanceTest struct {
	name string
	fn   func(t *testing.T, s tokenbroker.Store)
}

// RunConformance runs the conformance suite. open returns a fresh,
// migrated, empty store and arranges for it to be closed when t ends.
func RunConformance(t *testing.T, open func(t *testing.T) tokenbroker.Store) {
	t.Helper()
	tests := slices.Concat(storeTests, protocolTests, outboxTests, auditTests, consoleTests, lifecycleTests)
	runTests(t, tests, open)
}

// runTests runs each test in parallel on a store of its own.
func runTests(t *testing.T, tests []conformanceTest, open func(t *testing.T) tokenbroker.Store) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

// storeTests are the tests of the store methods outside the refresh
// protocol and the areas of the other files.
var storeTests = []conformanceTest{
	{"Basics", testBasics},
	{"GetLinkMissing", testGetLinkMissing},
	{"PutLinkRoundTrip", testPutLinkRoundTrip},
	{"PutLinkValidates", testPutLinkValidates},
	{"ListLinks", testListLinks},
	{"DeleteLink", testDeleteLink},
	{"ListLinksExpiringBefore", testListLinksExpiringBefore},
	{"ResealLink", testResealLink},
	{"ResealLinkLosesToCommit", testResealLinkLosesToCommit},
	{"CountSealedByKey", testCountSealedByKey},
	{"APIKeys", testAPIKeys},
	{"ConnectSession", testConnectSession},
	{"ConnectSessionExpired", testConnectSessionExpired},
	{"ClaimConnectSessionOnce", testClaimConnectSession},
	{"AuthRequest", testAuthRequest},
	{"AuthRequestExpired", testAuthRequestExpired},
	{"ConsumeAuthRequestSingleUse", testConsumeAuthRequest},
	{"ResealAuthRequest", testResealAuthRequest},
	{"DeleteExpired", testDeleteExpired},
	{"Audit", testAudit},
	{"Signaler", testSignaler},
}

// race calls fn(0) to fn(n-1) on n goroutines released at once, and
// returns when all have returned.
func race(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

// ctx returns a context bounded by the test's deadline (or a minute).
func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// MustNow returns the store's clock.
func MustNow(t testing.TB, s tokenbroker.Store) time.Time {
	t.Helper()
	now, err := s.Now(context.Background())
	if err != nil {
		t.Fatalf("Now: %v", err)
	}
	return now
}

// NewLink returns a valid link of user to provider with a full token set
// expiring at expiry (seconds precision, so every store keeps it exactly).
func NewLink(user, provider string, expiry time.Time) *tokenbroker.Link {
	return &tokenbroker.Link{
		UserID:       user,
		ProviderID:   provider,
		AccountID:    "acct-" + user,
		AccountLogin: "login-" + user,
		KeyID:        "k1",
		Token: tokenbroker.Token{
			AccessToken:  "at-1",
			TokenType:    "Bearer",
			RefreshToken: "rt-1",
			IDToken:      "idt-1",
			Expiry:       expiry.Truncate(time.Second),
			IssuedAt:     expiry.Truncate(time.Second).Add(-time.Hour),
			Scopes:       []string{"repo", "read:user"},
			Extra:        map[string]string{"refresh_token_expires_in": "15897600"},
		},
	}
}

// MustPutLink puts l and returns the stored link.
func MustPutLink(t testing.TB, s tokenbroker.Store, l *tokenbroker.Link) *tokenbroker.Link {
	t.Helper()
	out, err := s.PutLink(context.Background(), l, tokenbroker.Record{})
	if err != nil {
		t.Fatalf("PutLink(%s/%s): %v", l.UserID, l.ProviderID, err)
	}
	return out
}

// Acquire asks for the lease of l's generation for owner (no grace).
func Acquire(t testing.TB, s tokenbroker.Store, l *tokenbroker.Link, owner string, ttl time.Duration) *tokenbroker.LeaseGrant {
	t.Helper()
	g, err := s.AcquireLease(context.Background(), tokenbroker.LeaseRequest{LinkID: l.ID, Generation: l.Generation, Owner: owner, TTL: ttl})
	if err != nil {
		t.Fatalf("AcquireLease(%s/%s, gen %d, %s): %v", l.UserID, l.ProviderID, l.Generation, owner, err)
	}
	return g
}

// MustAcquire takes the lease of l's generation for owner and returns its
// fencing token; it fails the test unless the lease was won.
func MustAcquire(t testing.TB, s tokenbroker.Store, l *tokenbroker.Link, owner string, ttl time.Duration) tokenbroker.Lease {
	t.Helper()
	g := Acquire(t, s, l, owner, ttl)
	if !g.Won {
		t.Fatalf("AcquireLease(%s/%s, gen %d, %s) lost: %+v", l.UserID, l.ProviderID, l.Generation, owner, g)
	}
	return g.Lease
}

// MustCommit commits r (a refreshed copy of the leased link) with lease.
func MustCommit(t testing.TB, s tokenbroker.Store, lease tokenbroker.Lease, r *tokenbroker.Link) {
	t.Helper()
	ok, err := s.CommitRefresh(context.Background(), lease, r, tokenbroker.Record{})
	if err != nil || !ok {
		t.Fatalf("CommitRefresh = %v, %v; want won", ok, err)
	}
}

// MustRefresh takes the lease of l's current generation and commits a
// refreshed token n, as a lease holder does.
func MustRefresh(t testing.TB, s tokenbroker.Store, l *tokenbroker.Link, n int) {
	t.Helper()
	MustCommit(t, s, MustAcquire(t, s, l, fmt.Sprintf("refresher-%d", n), time.Minute), refreshed(l, n))
}

// MustGetLink reads a link.
func MustGetLink(t testing.TB, s tokenbroker.Store, user, provider string) *tokenbroker.Link {
	t.Helper()
	l, err := s.GetLink(context.Background(), user, provider)
	if err != nil {
		t.Fatalf("GetLink(%s/%s): %v", user, provider, err)
	}
	return l
}

func mustLink(t *testing.T, s tokenbroker.Store) *tokenbroker.Link {
	t.Helper()
	return MustPutLink(t, s, NewLink("alice", "github", MustNow(t, s).Add(time.Hour)))
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := tokenbroker.ErrorCode(err); got != code {
		t.Fatalf("error = %v (code %q), want code %q", err, got, code)
	}
}

func wantBool(t *testing.T, what string, got bool, err error, want bool) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if got != want {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

func sameToken(t *testing.T, got, want tokenbroker.Token) {
	t.Helper()
	if got.AccessToken != want.AccessToken || got.TokenType != want.TokenType ||
		got.RefreshToken != want.RefreshToken || got.IDToken != want.IDToken ||
		!got.Expiry.Equal(want.Expiry) || !got.IssuedAt.Equal(want.IssuedAt) || !slices.Equal(got.Scopes, want.Scopes) ||
		!maps.Equal(got.Extra, want.Extra) {
		t.Fatalf("token = %+v, want %+v", got, want)
	}
}

// sameLink compares every field; times with Equal.
func sameLink(t *testing.T, got, want *tokenbroker.Link) {
	t.Helper()
	sameToken(t, got.Token, want.Token)
	g, w := *got, *want
	for _, p := range []*tokenbroker.Link{&g, &w} {
		p.Token = tokenbroker.Token{}
		for _, tm := range []*time.Time{&p.LeaseUntil, &p.CreatedAt, &p.UpdatedAt, &p.RefreshedAt, &p.LastUsedAt} {
			if !tm.IsZero() {
				*tm = tm.UTC()
			}
		}
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("link =\n%+v\nwant\n%+v", g, w)
	}
}

func testBasics(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	if err := s.Ping(c); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	cur, latest, err := s.SchemaVersion(c)
	if err != nil {
		t.Fatalf("SchemaVersion: %v", err)
	}
	if cur != latest || latest < 1 {
		t.Fatalf("SchemaVersion = %d, %d; want a migrated store", cur, latest)
	}
	now := MustNow(t, s)
	if d := time.Since(now); d > time.Minute || d < -time.Minute {
		t.Fatalf("Now = %v, %v away from this machine's clock", now, d)
	}
}

func testGetLinkMissing(t *testing.T, s tokenbroker.Store) {
	_, err := s.GetLink(ctx(t), "nobody", "github")
	wantCode(t, err, tokenbroker.ENOTFOUND)
	if !tokenbroker.IsNotFound(err) {
		t.Fatal("IsNotFound = false")
	}
	links, err := s.ListLinks(ctx(t), "nobody")
	if err != nil || len(links) != 0 {
		t.Fatalf("ListLinks = %v, %v; want none", links, err)
	}
}

func testPutLinkRoundTrip(t *testing.T, s tokenbroker.Store) {
	now := MustNow(t, s)
	in := NewLink("alice@example.com", "github", now.Add(time.Hour))
	out := MustPutLink(t, s, in)
	if out.ID == 0 || out.Generation != 1 || out.State != tokenbroker.LinkActive {
		t.Fatalf("PutLink = id %d gen %d state %q; want an id, generation 1, active", out.ID, out.Generation, out.State)
	}
	if out.CreatedAt.IsZero() || out.UpdatedAt.IsZero() || out.RefreshedAt.IsZero() || !out.LeaseUntil.IsZero() || out.LeaseOwner != "" {
		t.Fatalf("PutLink times/lease = %+v", out)
	}
	sameToken(t, out.Token, in.Token)
	if out.AccountID != in.AccountID || out.AccountLogin != in.AccountLogin || out.KeyID != in.KeyID {
		t.Fatalf("PutLink account/key = %+v", out)
	}
	got := MustGetLink(t, s, in.UserID, in.ProviderID)
	sameLink(t, got, out)

	// A token without expiry, scopes or extra keeps them empty.
	bare := &tokenbroker.Link{UserID: "bob", ProviderID: "gitlab", Token: tokenbroker.Token{AccessToken: "x"}}
	b := MustPutLink(t, s, bare)
	if !b.Token.Expiry.IsZero() || len(b.Token.Scopes) != 0 || len(b.Token.Extra) != 0 {
		t.Fatalf("bare link token = %+v", b.Token)
	}
}

func testPutLinkValidates(t *testing.T, s tokenbroker.Store) {
	for _, l := range []*tokenbroker.Link{
		{UserID: "", ProviderID: "github", Token: tokenbroker.Token{AccessToken: "x"}},
		{UserID: "u", ProviderID: "Bad Provider", Token: tokenbroker.Token{AccessToken: "x"}},
		{UserID: "u", ProviderID: "github"},
	} {
		_, err := s.PutLink(ctx(t), l, tokenbroker.Record{})
		wantCode(t, err, tokenbroker.EINVALID)
	}
}

func testPutLinkExisting(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	first := mustLink(t, s)
	// An uncertain attempt, then a mark: the generation's accounting and
	// state that a reconnect must clear.
	lease := MustAcquire(t, s, first, "replica-a", time.Minute)
	ok, err := s.ReleaseLease(c, lease, tokenbroker.Release{Class: tokenbroker.FailureUncertain, Error: "timeout"}, tokenbroker.Record{})
	wantBool(t, "ReleaseLease", ok, err, true)
	lease = MustAcquire(t, s, first, "replica-a", time.Minute)
	ok, err = s.MarkReauthRequired(c, lease, tokenbroker.Reauth{Reason: tokenbroker.ReasonLostRefresh, Detail: "invalid_grant"}, tokenbroker.Record{})
	wantBool(t, "MarkReauthRequired", ok, err, true)

	again := NewLink("alice", "github", MustNow(t, s).Add(2*time.Hour))
	again.Token.AccessToken, again.Token.RefreshToken = "at-new", "rt-new"
	again.AccountLogin = "renamed"
	out := MustPutLink(t, s, again)
	if out.ID != first.ID || out.Generation != first.Generation+1 {
		t.Fatalf("PutLink again = id %d gen %d; want id %d gen %d", out.ID, out.Generation, first.ID, first.Generation+1)
	}
	if out.State != tokenbroker.LinkActive || out.FailureReason != "" || out.ReauthReason != "" || out.LeaseOwner != "" || !out.LeaseUntil.IsZero() {
		t.Fatalf("PutLink again did not reactivate and clear the lease: %+v", out)
	}
	if out.Attempts != 0 || out.Suspect != "" || out.Failures != 0 || out.LastError != "" || !out.FailingSince.IsZero() || out.LeaseEpoch != lease.Epoch {
		t.Fatalf("PutLink again kept the old generation's accounting or changed the epoch: %+v", out)
	}
	if out.RefreshedAt.Before(first.RefreshedAt) {
		t.Fatalf("PutLink again: refreshed_at %v before %v", out.RefreshedAt, first.RefreshedAt)
	}
	if !out.CreatedAt.Equal(first.CreatedAt) || out.AccountLogin != "renamed" {
		t.Fatalf("PutLink again = %+v", out)
	}
	sameToken(t, out.Token, again.Token)
	sameLink(t, MustGetLink(t, s, "alice", "github"), out)
}

func testListLinks(t *testing.T, s tokenbroker.Store) {
	exp := MustNow(t, s).Add(time.Hour)
	for _, p := range []string{"gitlab", "github", "bitbucket"} {
		MustPutLink(t, s, NewLink("alice", p, exp))
	}
	MustPutLink(t, s, NewLink("bob", "github", exp))
	links, err := s.ListLinks(ctx(t), "alice")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range links {
		if l.UserID != "alice" {
			t.Fatalf("ListLinks(alice) returned %s's link", l.UserID)
		}
		got = append(got, l.ProviderID)
	}
	if want := []string{"bitbucket", "github", "gitlab"}; !slices.Equal(got, want) {
		t.Fatalf("ListLinks providers = %v, want %v", got, want)
	}
}

func testDeleteLink(t *testing.T, s tokenbroker.Store) {
	mustLink(t, s)
	rec := tokenbroker.Record{Audit: []tokenbroker.AuditEvent{{Action: tokenbroker.AuditLinkDelete, UserID: "alice", ProviderID: "github", Outcome: "ok"}}}
	if err := s.DeleteLink(ctx(t), "alice", "github", rec); err != nil {
		t.Fatal(err)
	}
	_, err := s.GetLink(ctx(t), "alice", "github")
	wantCode(t, err, tokenbroker.ENOTFOUND)
	wantCode(t, s.DeleteLink(ctx(t), "alice", "github", rec), tokenbroker.ENOTFOUND)
	// The record was written once, with the delete that happened.
	evs, err := s.ListAudit(ctx(t), tokenbroker.AuditFilter{Action: tokenbroker.AuditLinkDelete})
	if err != nil || len(evs) != 1 {
		t.Fatalf("audit after delete = %v, %v; want one event", evs, err)
	}
}

func testAcquireLease(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	before := MustNow(t, s)

	g, err := s.AcquireLease(c, tokenbroker.LeaseRequest{LinkID: l.ID, Generation: l.Generation + 1, Owner: "a", TTL: time.Minute})
	if err != nil || g.Won || g.Generation != l.Generation || g.State != tokenbroker.LinkActive {
		t.Fatalf("AcquireLease(wrong generation) = %+v, %v; want lost, reporting generation %d", g, err, l.Generation)
	}
	_, err = s.AcquireLease(c, tokenbroker.LeaseRequest{LinkID: l.ID + 1000, Generation: l.Generation, Owner: "a", TTL: time.Minute})
	wantCode(t, err, tokenbroker.ENOTFOUND)

	g = Acquire(t, s, l, "a", time.Minute)
	if !g.Won || g.Lease.Owner != "a" || g.Lease.LinkID != l.ID || g.Lease.Generation != l.Generation || g.Lease.Epoch <= l.LeaseEpoch {
		t.Fatalf("AcquireLease = %+v; want won with a fencing token above epoch %d", g, l.LeaseEpoch)
	}
	if g.Attempt != 1 || g.Suspect != "" || g.PreviousOwner != "" {
		t.Fatalf("first acquisition: attempt %d suspect %q previous %q; want 1, none, none", g.Attempt, g.Suspect, g.PreviousOwner)
	}
	got := MustGetLink(t, s, "alice", "github")
	if got.LeaseOwner != "a" || got.Generation != l.Generation || got.LeaseEpoch != g.Lease.Epoch || got.Attempts != 1 {
		t.Fatalf("stored lease owner %q gen %d epoch %d attempts %d", got.LeaseOwner, got.Generation, got.LeaseEpoch, got.Attempts)
	}
	if d := got.LeaseUntil.Sub(before); d < 55*time.Second || d > 2*time.Minute {
		t.Fatalf("lease_until is %v after the database's now, want about a minute", d)
	}

	// A live lease excludes everyone, its owner too; the grant says whose.
	for _, owner := range []string{"b", "a"} {
		g2 := Acquire(t, s, l, owner, time.Minute)
		if g2.Won || g2.LeaseOwner != "a" || !g2.LeaseUntil.Equal(got.LeaseUntil) || g2.Now.IsZero() {
			t.Fatalf("AcquireLease(live lease, %s) = %+v; want lost, reporting a's lease until %v", owner, g2, got.LeaseUntil)
		}
	}
	if now := MustGetLink(t, s, "alice", "github"); now.LeaseOwner != "a" || now.LeaseEpoch != g.Lease.Epoch {
		t.Fatalf("lease owner %q epoch %d after lost acquisitions, want a, %d", now.LeaseOwner, now.LeaseEpoch, g.Lease.Epoch)
	}

	_, err = s.AcquireLease(c, tokenbroker.LeaseRequest{LinkID: l.ID, Generation: l.Generation, TTL: time.Minute})
	wantCode(t, err, tokenbroker.EINVALID)
}

func testAcquireLeaseRace(t *testing.T, s tokenbroker.Store) {
	l := mustLink(t, s)
	c := ctx(t)
	const n = 64
	var (
		wins   atomic.Int32
		winner atomic.Value
		errs   = make(chan error, n)
	)
	race(n, func(i int) {
		owner := fmt.Sprintf("replica-%d", i)
		g, err := s.AcquireLease(c, tokenbroker.LeaseRequest{LinkID: l.ID, Generation: l.Generation, Owner: owner, TTL: time.Minute})
		if err != nil {
			errs <- err
			return
		}
		if g.Won {
			wins.Add(1)
			winner.Store(owner)
		}
	})
	close(errs)
	for err := range errs {
		t.Errorf("AcquireLease: %v", err)
	}
	if got := wins.Load(); got != 1 {
		t.Fatalf("%d of %d racing AcquireLease calls won, want exactly 1", got, n)
	}
	if got := MustGetLink(t, s, "alice", "github"); got.LeaseOwner != winner.Load() || got.Attempts != 1 {
		t.Fatalf("lease owner = %q attempts %d, want the winner %q and one attempt", got.LeaseOwner, got.Attempts, winner.Load())
	}
}

func testExpiredLeaseTakeover(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	// A negative TTL makes a lease that is already past its expiry: a
	// holder that died without releasing it.
	dead := MustAcquire(t, s, l, "dead", -time.Second)

	// The first acquisition that finds it expired starts its grace and
	// loses; with no grace the next one takes it over.
	g := Acquire(t, s, l, "b", time.Minute)
	if g.Won || g.LeaseOwner != "dead" || g.GraceUntil.IsZero() {
		t.Fatalf("first look at an expired lease = %+v; want lost with the grace started", g)
	}
	g = Acquire(t, s, l, "b", time.Minute)
	if !g.Won || g.PreviousOwner != "dead" || g.Suspect != tokenbroker.LossHolderDied || g.Attempt != 2 || g.Lease.Epoch <= dead.Epoch {
		t.Fatalf("takeover = %+v; want won from dead, suspect holder_died, attempt 2, epoch above %d", g, dead.Epoch)
	}
	if got := MustGetLink(t, s, "alice", "github"); got.LeaseOwner != "b" || got.Suspect != tokenbroker.LossHolderDied {
		t.Fatalf("lease owner %q suspect %q, want b, holder_died", got.LeaseOwner, got.Suspect)
	}
	// The dead holder's writes no longer apply, whatever they are.
	before := MustGetLink(t, s, "alice", "github")
	ok, err := s.RenewLease(c, dead, time.Minute)
	wantBool(t, "RenewLease(previous holder)", ok, err, false)
	ok, err = s.ReleaseLease(c, dead, tokenbroker.Release{Class: tokenbroker.FailureUncertain, Backoff: time.Hour}, tokenbroker.Record{})
	wantBool(t, "ReleaseLease(previous holder)", ok, err, false)
	ok, err = s.CommitRefresh(c, dead, refreshed(l, 2), tokenbroker.Record{})
	wantBool(t, "CommitRefresh(previous holder)", ok, err, false)
	ok, err = s.MarkReauthRequired(c, dead, tokenbroker.Reauth{Reason: tokenbroker.ReasonRevoked}, tokenbroker.Record{})
	wantBool(t, "MarkReauthRequired(previous holder)", ok, err, false)
	sameLink(t, MustGetLink(t, s, "alice", "github"), before)
}

func testExpiredLeaseGrace(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	holder := MustAcquire(t, s, l, "holder", -time.Second)
	req := tokenbroker.LeaseRequest{LinkID: l.ID, Generation: l.Generation, Owner: "successor", TTL: time.Minute, Grace: time.Hour}
	for range 3 {
		g, err := s.AcquireLease(c, req)
		if err != nil || g.Won {
			t.Fatalf("AcquireLease within the grace = %+v, %v; want lost", g, err)
		}
		if d := g.GraceUntil.Sub(g.Now); d < 59*time.Minute {
			t.Fatalf("grace ends %v after now, want about an hour", d)
		}
	}
	// The live holder, back from its outage, renews its expired lease
	// (nobody took it over) and then commits on its own epoch.
	ok, err := s.RenewLease(c, holder, time.Minute)
	wantBool(t, "RenewLease(expired, not taken over)", ok, err, true)
	if g, err := s.AcquireLease(c, req); err != nil || g.Won || !g.GraceUntil.IsZero() {
		t.Fatalf("AcquireLease after the renewal = %+v, %v; want lost to a live lease, no grace", g, err)
	}
	MustCommit(t, s, holder, refreshed(l, 2))
	if got := MustGetLink(t, s, "alice", "github"); got.Generation != l.Generation+1 || got.Token.AccessToken != "at-2" {
		t.Fatalf("after the holder's commit: gen %d token %q", got.Generation, got.Token.AccessToken)
	}

	// A holder whose lease expired and was never renewed still commits
	// while nobody took it over.
	cur := MustGetLink(t, s, "alice", "github")
	late := MustAcquire(t, s, cur, "late", -time.Second)
	req.Generation = cur.Generation
	if g, err := s.AcquireLease(c, req); err != nil || g.Won {
		t.Fatalf("AcquireLease within the grace = %+v, %v; want lost", g, err)
	}
	MustCommit(t, s, late, refreshed(cur, 3))
}

func testRenewLease(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	lease := MustAcquire(t, s, l, "a", time.Second)
	first := MustGetLink(t, s, "alice", "github").LeaseUntil
	for _, wrong := range []tokenbroker.Lease{
		{LinkID: lease.LinkID, Generation: lease.Generation, Owner: "b", Epoch: lease.Epoch},
		{LinkID: lease.LinkID, Generation: lease.Generation, Owner: "a", Epoch: lease.Epoch + 1},
		{LinkID: lease.LinkID, Generation: lease.Generation, Owner: "a", Epoch: lease.Epoch - 1},
	} {
		ok, err := s.RenewLease(c, wrong, time.Hour)
		wantBool(t, fmt.Sprintf("RenewLease(%+v)", wrong), ok, err, false)
	}
	if got := MustGetLink(t, s, "alice", "github").LeaseUntil; !got.Equal(first) {
		t.Fatalf("a refused renewal moved lease_until from %v to %v", first, got)
	}
	ok, err := s.RenewLease(c, lease, time.Hour)
	wantBool(t, "RenewLease", ok, err, true)
	got := MustGetLink(t, s, "alice", "github")
	if d := got.LeaseUntil.Sub(first); d < 50*time.Minute {
		t.Fatalf("renewal moved lease_until by %v, want about an hour", d)
	}
	if got.LeaseEpoch != lease.Epoch || got.Attempts != 1 {
		t.Fatalf("renewal changed epoch %d or attempts %d", got.LeaseEpoch, got.Attempts)
	}
}

func testReleaseLease(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	lease := MustAcquire(t, s, l, "a", time.Minute)
	leased := MustGetLink(t, s, "alice", "github")

	other := lease
	other.Owner = "b"
	ok, err := s.ReleaseLease(c, other, tokenbroker.Release{}, tokenbroker.Record{})
	wantBool(t, "ReleaseLease(non-holder)", ok, err, false)
	stale := lease
	stale.Epoch--
	ok, err = s.ReleaseLease(c, stale, tokenbroker.Release{}, tokenbroker.Record{})
	wantBool(t, "ReleaseLease(old epoch)", ok, err, false)
	sameLink(t, MustGetLink(t, s, "alice", "github"), leased)

	ok, err = s.ReleaseLease(c, lease, tokenbroker.Release{}, tokenbroker.Record{})
	wantBool(t, "ReleaseLease(holder)", ok, err, true)
	got := MustGetLink(t, s, "alice", "github")
	if got.LeaseOwner != "" || !got.LeaseUntil.IsZero() || got.Generation != l.Generation {
		t.Fatalf("after release: owner %q until %v gen %d", got.LeaseOwner, got.LeaseUntil, got.Generation)
	}
	// Nothing was sent: no failure, no backoff, no suspect.
	if got.Failures != 0 || !got.NextAttemptAt.IsZero() || got.Suspect != "" || got.LastError != "" {
		t.Fatalf("a plain release recorded a failure: %+v", got)
	}
	ok, err = s.ReleaseLease(c, lease, tokenbroker.Release{}, tokenbroker.Record{})
	wantBool(t, "ReleaseLease(twice)", ok, err, false)
	// A released lease is free at once, with no grace and no suspect.
	g := Acquire(t, s, l, "b", time.Minute)
	if !g.Won || g.Suspect != "" || g.PreviousOwner != "" || g.Attempt != 2 {
		t.Fatalf("AcquireLease after release = %+v; want won, attempt 2, no suspect", g)
	}
}

func testReleaseOutcome(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	lease := MustAcquire(t, s, l, "a", time.Minute)
	before := MustNow(t, s)
	ok, err := s.ReleaseLease(c, lease, tokenbroker.Release{Class: tokenbroker.FailureNotProcessed, Backoff: time.Hour, Error: "connection refused"}, tokenbroker.Record{})
	wantBool(t, "ReleaseLease(not processed)", ok, err, true)
	got := MustGetLink(t, s, "alice", "github")
	if got.Failures != 1 || got.FailingSince.IsZero() || got.LastError != "connection refused" || got.Suspect != "" {
		t.Fatalf("after a not-processed failure: %+v", got)
	}
	if d := got.NextAttemptAt.Sub(before); d < 59*time.Minute || d > 61*time.Minute {
		t.Fatalf("next_attempt_at is %v after now, want an hour", d)
	}
	// The backoff holds every replica off, and the grant says until when.
	g := Acquire(t, s, l, "b", time.Minute)
	if g.Won || !g.NextAttemptAt.Equal(got.NextAttemptAt) || g.LeaseOwner != "" {
		t.Fatalf("AcquireLease during the backoff = %+v; want lost, reporting next_attempt_at %v", g, got.NextAttemptAt)
	}

	// An uncertain attempt (after the backoff) makes the generation
	// suspect; a later not-processed one does not clear it.
	l2 := MustPutLink(t, s, NewLink("bob", "github", MustNow(t, s).Add(time.Hour)))
	lease = MustAcquire(t, s, l2, "a", time.Minute)
	ok, err = s.ReleaseLease(c, lease, tokenbroker.Release{Class: tokenbroker.FailureUncertain, Error: "timeout"}, tokenbroker.Record{})
	wantBool(t, "ReleaseLease(uncertain)", ok, err, true)
	lease = MustAcquire(t, s, l2, "b", time.Minute)
	ok, err = s.ReleaseLease(c, lease, tokenbroker.Release{Class: tokenbroker.FailureNotProcessed, Error: "refused"}, tokenbroker.Record{})
	wantBool(t, "ReleaseLease(not processed)", ok, err, true)
	got = MustGetLink(t, s, "bob", "github")
	if got.Suspect != tokenbroker.LossAnswerLost || got.Failures != 2 || got.LastError != "refused" || !got.NextAttemptAt.IsZero() {
		t.Fatalf("after uncertain then not processed: %+v", got)
	}
	g = Acquire(t, s, l2, "c", time.Minute)
	if !g.Won || g.Suspect != tokenbroker.LossAnswerLost || g.Attempt != 3 {
		t.Fatalf("third attempt = %+v; want won, suspect answer_lost, attempt 3", g)
	}
}

func testAttemptsAndSuspect(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	// A holder dies (its lease is found expired); its successor's grant
	// says so whoever the successor is - the dead holder's own id too.
	MustAcquire(t, s, l, "r0", -time.Second)
	Acquire(t, s, l, "r0", time.Minute) // finds it expired: grace starts
	g := Acquire(t, s, l, "r0", time.Minute)
	if !g.Won || g.Suspect != tokenbroker.LossHolderDied || g.PreviousOwner != "r0" {
		t.Fatalf("restart under the same owner = %+v; want won with suspect holder_died", g)
	}
	// A takeover that then fails as not processed keeps the suspect for
	// its own successor: the loss stays attributed.
	ok, err := s.ReleaseLease(c, g.Lease, tokenbroker.Release{Class: tokenbroker.FailureNotProcessed}, tokenbroker.Record{})
	wantBool(t, "ReleaseLease", ok, err, true)
	g2 := Acquire(t, s, l, "r1", time.Minute)
	if !g2.Won || g2.Suspect != tokenbroker.LossHolderDied || g2.Attempt != 3 || g2.PreviousOwner != "" {
		t.Fatalf("attempt after a released takeover = %+v; want suspect holder_died kept, attempt 3", g2)
	}
	// A commit starts the next generation clean.
	MustCommit(t, s, g2.Lease, refreshed(l, 2))
	cur := MustGetLink(t, s, "alice", "github")
	if cur.Attempts != 0 || cur.Suspect != "" || cur.Failures != 0 || !cur.FailingSince.IsZero() || cur.LastError != "" {
		t.Fatalf("after a commit: %+v", cur)
	}
	if g := Acquire(t, s, cur, "r1", time.Minute); !g.Won || g.Attempt != 1 || g.Suspect != "" {
		t.Fatalf("first attempt of the new generation = %+v", g)
	}
}

func refreshed(l *tokenbroker.Link, n int) *tokenbroker.Link {
	r := *l
	r.Token.AccessToken = fmt.Sprintf("at-%d", n)
	r.Token.RefreshToken = fmt.Sprintf("rt-%d", n)
	r.Token.IDToken = ""
	r.Token.Expiry = l.Token.Expiry.Add(time.Duration(n) * time.Hour)
	r.Token.IssuedAt = r.Token.Expiry.Add(-time.Hour)
	r.Token.Scopes = []string{"repo"}
	r.Token.Extra = map[string]string{"n": fmt.Sprint(n)}
	r.KeyID = "k2"
	return &r
}

func testCommitRefresh(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	lease := MustAcquire(t, s, l, "a", time.Minute)
	ok, err := s.ReleaseLease(c, lease, tokenbroker.Release{Class: tokenbroker.FailureUncertain, Error: "timeout"}, tokenbroker.Record{})
	wantBool(t, "ReleaseLease", ok, err, true)
	lease = MustAcquire(t, s, l, "a", time.Minute)
	r := refreshed(l, 2)
	MustCommit(t, s, lease, r)
	got := MustGetLink(t, s, "alice", "github")
	if got.Generation != l.Generation+1 {
		t.Fatalf("generation = %d, want %d", got.Generation, l.Generation+1)
	}
	if got.LeaseOwner != "" || !got.LeaseUntil.IsZero() || got.LeaseEpoch != lease.Epoch {
		t.Fatalf("lease not cleared (or epoch lost): %q %v %d", got.LeaseOwner, got.LeaseUntil, got.LeaseEpoch)
	}
	if got.Attempts != 0 || got.Suspect != "" || got.Failures != 0 || got.LastError != "" || !got.NextAttemptAt.IsZero() {
		t.Fatalf("the generation's accounting was not cleared: %+v", got)
	}
	if got.RefreshedAt.IsZero() || got.KeyID != "k2" {
		t.Fatalf("refreshed_at %v key %q", got.RefreshedAt, got.KeyID)
	}
	sameToken(t, got.Token, r.Token)
	// The new generation can be leased again.
	MustAcquire(t, s, got, "b", time.Minute)
}

func testCommitRefreshStale(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	MustRefresh(t, s, l, 2)
	cur := MustGetLink(t, s, "alice", "github")
	lease := MustAcquire(t, s, cur, "a", time.Minute)
	before := MustGetLink(t, s, "alice", "github")

	// A commit naming the generation read before the winner's changes
	// nothing, even with the current lease.
	stale := lease
	stale.Generation = l.Generation
	ok, err := s.CommitRefresh(c, stale, refreshed(l, 3), tokenbroker.Record{})
	wantBool(t, "CommitRefresh(stale generation)", ok, err, false)
	sameLink(t, MustGetLink(t, s, "alice", "github"), before)
}

func testCommitRefreshFenced(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	// No lease at all.
	ok, err := s.CommitRefresh(c, tokenbroker.Lease{LinkID: l.ID, Generation: l.Generation, Owner: "a", Epoch: l.LeaseEpoch}, refreshed(l, 2), tokenbroker.Record{})
	wantBool(t, "CommitRefresh(no lease)", ok, err, false)
	// Another owner's lease, and an older epoch of the same owner.
	lease := MustAcquire(t, s, l, "a", time.Minute)
	before := MustGetLink(t, s, "alice", "github")
	for _, wrong := range []tokenbroker.Lease{
		{LinkID: l.ID, Generation: l.Generation, Owner: "b", Epoch: lease.Epoch},
		{LinkID: l.ID, Generation: l.Generation, Owner: "a", Epoch: lease.Epoch - 1},
	} {
		ok, err := s.CommitRefresh(c, wrong, refreshed(l, 2), tokenbroker.Record{})
		wantBool(t, fmt.Sprintf("CommitRefresh(%+v)", wrong), ok, err, false)
	}
	sameLink(t, MustGetLink(t, s, "alice", "github"), before)
	MustCommit(t, s, lease, refreshed(l, 2))
	// The same lease cannot commit twice.
	ok, err = s.CommitRefresh(c, lease, refreshed(l, 3), tokenbroker.Record{})
	wantBool(t, "CommitRefresh(twice)", ok, err, false)
}

func testCommitRefreshRace(t *testing.T, s tokenbroker.Store) {
	l := mustLink(t, s)
	c := ctx(t)
	lease := MustAcquire(t, s, l, "a", time.Minute)
	const n = 16
	won := make(chan int, n)
	race(n, func(i int) {
		ok, err := s.CommitRefresh(c, lease, refreshed(l, i+2), tokenbroker.Record{})
		if err != nil {
			t.Errorf("CommitRefresh: %v", err)
		}
		if ok {
			won <- i + 2
		}
	})
	close(won)
	var winners []int
	for w := range won {
		winners = append(winners, w)
	}
	if len(winners) != 1 {
		t.Fatalf("%d racing commits of one generation won, want exactly 1", len(winners))
	}
	got := MustGetLink(t, s, "alice", "github")
	if got.Generation != l.Generation+1 || got.Token.AccessToken != fmt.Sprintf("at-%d", winners[0]) {
		t.Fatalf("stored gen %d token %q; want gen %d and the winner's token", got.Generation, got.Token.AccessToken, l.Generation+1)
	}
}

func testCommitRefreshAccount(t *testing.T, s tokenbroker.Store) {
	l := mustLink(t, s)
	r := refreshed(l, 2)
	r.AccountID, r.AccountLogin = "", ""
	MustCommit(t, s, MustAcquire(t, s, l, "a", time.Minute), r)
	got := MustGetLink(t, s, "alice", "github")
	if got.AccountID != l.AccountID || got.AccountLogin != l.AccountLogin {
		t.Fatalf("account = %q %q, want kept %q %q", got.AccountID, got.AccountLogin, l.AccountID, l.AccountLogin)
	}
	r = refreshed(got, 3)
	r.AccountLogin = "renamed"
	MustCommit(t, s, MustAcquire(t, s, got, "a", time.Minute), r)
	if got := MustGetLink(t, s, "alice", "github"); got.AccountLogin != "renamed" || got.AccountID != l.AccountID {
		t.Fatalf("account = %q %q", got.AccountID, got.AccountLogin)
	}
}

func testMarkReauth(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	lease := MustAcquire(t, s, l, "a", time.Minute)
	ok, err := s.MarkReauthRequired(c, lease, tokenbroker.Reauth{Reason: tokenbroker.ReasonRevoked, Detail: "invalid_grant: revoked"}, tokenbroker.Record{})
	wantBool(t, "MarkReauthRequired", ok, err, true)
	got := MustGetLink(t, s, "alice", "github")
	if got.State != tokenbroker.LinkReauthRequired || got.ReauthReason != tokenbroker.ReasonRevoked || got.FailureReason != "invalid_grant: revoked" {
		t.Fatalf("state %q reason %q %q", got.State, got.ReauthReason, got.FailureReason)
	}
	if got.Generation != l.Generation || got.LeaseOwner != "" || !got.LeaseUntil.IsZero() {
		t.Fatalf("gen %d lease %q %v; want generation kept and lease cleared", got.Generation, got.LeaseOwner, got.LeaseUntil)
	}
	sameToken(t, got.Token, l.Token)
	// A broken link cannot be leased.
	if g := Acquire(t, s, l, "b", time.Minute); g.Won || g.State != tokenbroker.LinkReauthRequired {
		t.Fatalf("AcquireLease(reauth_required) = %+v; want lost, reporting the state", g)
	}
	// It stays out of the expiry scan.
	links, err := s.ListLinksExpiringBefore(c, l.Token.Expiry.Add(time.Hour), tokenbroker.ExpiryCursor{}, 10)
	if err != nil || len(links) != 0 {
		t.Fatalf("ListLinksExpiringBefore = %d links, %v; want none", len(links), err)
	}
}

func testMarkReauthStale(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	old := MustAcquire(t, s, l, "a", -time.Second)
	Acquire(t, s, l, "b", time.Minute) // grace starts
	winner := MustAcquire(t, s, l, "b", time.Minute)
	MustCommit(t, s, winner, refreshed(l, 2))
	before := MustGetLink(t, s, "alice", "github")
	// A holder whose refresh failed with invalid_grant after it lost its
	// lease must not break the winner's fresh token (I4).
	ok, err := s.MarkReauthRequired(c, old, tokenbroker.Reauth{Reason: tokenbroker.ReasonRevoked}, tokenbroker.Record{})
	wantBool(t, "MarkReauthRequired(stale lease)", ok, err, false)
	sameLink(t, MustGetLink(t, s, "alice", "github"), before)
}

func testCommitAfterMark(t *testing.T, s tokenbroker.Store) {
	// A holder that outlived its lease commits after a successor, whose
	// refresh token was already spent, marked the same generation: the
	// successor's lease fenced the holder out, so the commit changes
	// nothing and the link is not resurrected with a token the provider
	// may already have revoked (its family).
	c := ctx(t)
	l := mustLink(t, s)
	holder := MustAcquire(t, s, l, "holder", -time.Second)
	Acquire(t, s, l, "successor", time.Minute) // grace starts
	successor := MustAcquire(t, s, l, "successor", time.Minute)
	ok, err := s.MarkReauthRequired(c, successor, tokenbroker.Reauth{Reason: tokenbroker.ReasonLostRefresh, Detail: "lost refresh"}, tokenbroker.Record{})
	wantBool(t, "MarkReauthRequired", ok, err, true)
	before := MustGetLink(t, s, "alice", "github")
	ok, err = s.CommitRefresh(c, holder, refreshed(l, 2), tokenbroker.Record{})
	wantBool(t, "CommitRefresh after mark", ok, err, false)
	got := MustGetLink(t, s, "alice", "github")
	if got.State != tokenbroker.LinkReauthRequired || got.ReauthReason != tokenbroker.ReasonLostRefresh {
		t.Fatalf("state %q reason %q; want reauth_required, lost_refresh", got.State, got.ReauthReason)
	}
	sameLink(t, got, before)
}

func testRecordWithChange(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	rec := func(action string) tokenbroker.Record {
		return tokenbroker.Record{Audit: []tokenbroker.AuditEvent{{Actor: "r1", Action: action, UserID: "alice", ProviderID: "github", Outcome: "ok", Detail: action}}}
	}
	count := func(action string) int {
		t.Helper()
		evs, err := s.ListAudit(c, tokenbroker.AuditFilter{Action: action})
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}
	lease := MustAcquire(t, s, l, "a", time.Minute)
	stale := lease
	stale.Epoch--
	// Lost writes write no record.
	if ok, err := s.CommitRefresh(c, stale, refreshed(l, 2), rec(tokenbroker.AuditLinkRefresh)); err != nil || ok {
		t.Fatalf("CommitRefresh(stale) = %v, %v", ok, err)
	}
	if ok, err := s.ReleaseLease(c, stale, tokenbroker.Release{}, rec(tokenbroker.AuditRefreshFailed)); err != nil || ok {
		t.Fatalf("ReleaseLease(stale) = %v, %v", ok, err)
	}
	if ok, err := s.MarkReauthRequired(c, stale, tokenbroker.Reauth{Reason: tokenbroker.ReasonRevoked}, rec(tokenbroker.AuditLinkBroken)); err != nil || ok {
		t.Fatalf("MarkReauthRequired(stale) = %v, %v", ok, err)
	}
	for _, a := range []string{tokenbroker.AuditLinkRefresh, tokenbroker.AuditRefreshFailed, tokenbroker.AuditLinkBroken} {
		if n := count(a); n != 0 {
			t.Fatalf("%d %s events after lost writes, want 0", n, a)
		}
	}
	// Won writes write theirs.
	ok, err := s.ReleaseLease(c, lease, tokenbroker.Release{Class: tokenbroker.FailureNotProcessed}, rec(tokenbroker.AuditRefreshFailed))
	wantBool(t, "ReleaseLease", ok, err, true)
	lease = MustAcquire(t, s, l, "a", time.Minute)
	ok, err = s.CommitRefresh(c, lease, refreshed(l, 2), rec(tokenbroker.AuditLinkRefresh))
	wantBool(t, "CommitRefresh", ok, err, true)
	cur := MustGetLink(t, s, "alice", "github")
	ok, err = s.MarkReauthRequired(c, MustAcquire(t, s, cur, "a", time.Minute), tokenbroker.Reauth{Reason: tokenbroker.ReasonRevoked}, rec(tokenbroker.AuditLinkBroken))
	wantBool(t, "MarkReauthRequired", ok, err, true)
	if _, err := s.PutLink(c, NewLink("alice", "github", l.Token.Expiry), rec(tokenbroker.AuditLinkCreate)); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{tokenbroker.AuditLinkRefresh, tokenbroker.AuditRefreshFailed, tokenbroker.AuditLinkBroken, tokenbroker.AuditLinkCreate} {
		if n := count(a); n != 1 {
			t.Fatalf("%d %s events after the won write, want 1", n, a)
		}
	}
	// A record that cannot be written undoes the change with it.
	cur = MustGetLink(t, s, "alice", "github")
	bad := tokenbroker.Record{Audit: []tokenbroker.AuditEvent{{UserID: "alice"}}} // no action
	_, err = s.CommitRefresh(c, MustAcquire(t, s, cur, "a", time.Minute), refreshed(cur, 3), bad)
	wantCode(t, err, tokenbroker.EINVALID)
	if got := MustGetLink(t, s, "alice", "github"); got.Generation != cur.Generation {
		t.Fatalf("a commit whose record failed moved the generation %d -> %d", cur.Generation, got.Generation)
	}
}

func testProviderHealthCircuit(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	h, err := s.GetProviderHealth(c, "github")
	if err != nil || h.ProviderID != "github" || h.Troubled() || h.Open() || h.Now.IsZero() {
		t.Fatalf("GetProviderHealth(new) = %+v, %v; want healthy with the database's now", h, err)
	}
	if before, err := s.RecordProviderSuccess(c, "github", tokenbroker.Record{}); err != nil || before != nil {
		t.Fatalf("RecordProviderSuccess(healthy) = %+v, %v; want nothing cleared", before, err)
	}
	f := tokenbroker.ProviderFailure{Threshold: 3, OpenFor: time.Hour, MaxOpenFor: 4 * time.Hour}
	for i := 1; i <= 2; i++ {
		after, opened, err := s.RecordProviderFailure(c, "github", f)
		if err != nil || opened || after.Open() || after.Failures != i {
			t.Fatalf("failure %d = %+v, %v, %v; want counted, closed", i, after, opened, err)
		}
	}
	after, opened, err := s.RecordProviderFailure(c, "github", f)
	if err != nil || !opened || !after.Open() || after.Opens != 1 {
		t.Fatalf("failure 3 = %+v, %v, %v; want the circuit opened", after, opened, err)
	}
	if d := after.OpenUntil.Sub(after.Now); d < 59*time.Minute || d > 61*time.Minute {
		t.Fatalf("open for %v, want an hour", d)
	}
	again, opened, err := s.RecordProviderFailure(c, "github", f)
	if err != nil || opened || !again.OpenUntil.Equal(after.OpenUntil) {
		t.Fatalf("failure while open = %+v, %v, %v; want counted, same opening", again, opened, err)
	}
	// An open circuit admits no probe before it ends.
	ok, err := s.AcquireProviderProbe(c, "github", "r1", time.Minute)
	wantBool(t, "AcquireProviderProbe(open)", ok, err, false)
	// Other providers are not affected.
	if h, err := s.GetProviderHealth(c, "gitlab"); err != nil || h.Troubled() {
		t.Fatalf("gitlab health = %+v, %v", h, err)
	}
	list, err := s.ListProviderHealth(c)
	if err != nil || len(list) != 1 || list[0].ProviderID != "github" || !list[0].Open() {
		t.Fatalf("ListProviderHealth = %+v, %v", list, err)
	}
	before, err := s.RecordProviderSuccess(c, "github", tokenbroker.Record{})
	if err != nil || before == nil || before.Failures != 4 || !before.Open() {
		t.Fatalf("RecordProviderSuccess = %+v, %v; want the cleared state", before, err)
	}
	if h, err := s.GetProviderHealth(c, "github"); err != nil || h.Troubled() || h.Opens != 0 {
		t.Fatalf("after success = %+v, %v; want healthy", h, err)
	}
	// A provider's Retry-After keeps the circuit open at least that long.
	f = tokenbroker.ProviderFailure{Threshold: 1, OpenFor: time.Second, MaxOpenFor: time.Minute, RetryAfter: 2 * time.Hour}
	after, opened, err = s.RecordProviderFailure(c, "github", f)
	if err != nil || !opened || after.OpenUntil.Sub(after.Now) < 119*time.Minute {
		t.Fatalf("failure with Retry-After = %+v, %v, %v; want open for two hours", after, opened, err)
	}
}

func testProviderHealthMisconfigured(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	f := tokenbroker.ProviderFailure{Threshold: 5, OpenFor: time.Minute, MaxOpenFor: time.Hour}
	if _, _, err := s.RecordProviderFailure(c, "github", f); err != nil {
		t.Fatal(err)
	}
	f.Misconfigured = "invalid_client: bad secret"
	after, changed, err := s.RecordProviderFailure(c, "github", f)
	if err != nil || !changed || after.Misconfigured != f.Misconfigured || after.MisconfiguredSince.IsZero() || !after.Open() {
		t.Fatalf("misconfigured = %+v, %v, %v; want open at once, misconfigured", after, changed, err)
	}
	since := after.MisconfiguredSince
	after, changed, err = s.RecordProviderFailure(c, "github", f)
	if err != nil || changed || !after.MisconfiguredSince.Equal(since) {
		t.Fatalf("misconfigured again = %+v, %v, %v; want no change", after, changed, err)
	}
	before, err := s.RecordProviderSuccess(c, "github", tokenbroker.Record{})
	if err != nil || before == nil || before.Misconfigured == "" {
		t.Fatalf("RecordProviderSuccess = %+v, %v; want the misconfiguration cleared", before, err)
	}
	if h, _ := s.GetProviderHealth(c, "github"); h.Misconfigured != "" || h.Open() {
		t.Fatalf("after success: %+v", h)
	}
}

func testProviderProbeRace(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	f := tokenbroker.ProviderFailure{Threshold: 1, OpenFor: time.Millisecond, MaxOpenFor: time.Millisecond}
	after, opened, err := s.RecordProviderFailure(c, "github", f)
	if err != nil || !opened {
		t.Fatalf("RecordProviderFailure = %+v, %v, %v", after, opened, err)
	}
	// Wait on the database's clock for the opening to end.
	for MustNow(t, s).Before(after.OpenUntil.Add(2 * time.Millisecond)) {
		time.Sleep(time.Millisecond)
	}
	const n = 16
	var wins atomic.Int32
	race(n, func(i int) {
		ok, err := s.AcquireProviderProbe(c, "github", fmt.Sprintf("r%d", i), time.Minute)
		if err != nil {
			t.Errorf("AcquireProviderProbe: %v", err)
		}
		if ok {
			wins.Add(1)
		}
	})
	if got := wins.Load(); got != 1 {
		t.Fatalf("%d of %d racing probes won, want exactly 1", got, n)
	}
}

func testListLinksExpiringBefore(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	now := MustNow(t, s).Truncate(time.Second)
	MustPutLink(t, s, NewLink("u", "p1", now.Add(1*time.Minute)))
	MustPutLink(t, s, NewLink("u", "p2", now.Add(2*time.Minute)))
	MustPutLink(t, s, NewLink("v", "p0", now.Add(30*time.Second)))
	MustPutLink(t, s, NewLink("u", "p3", now.Add(time.Hour)))
	noExpiry := NewLink("u", "p4", time.Time{})
	MustPutLink(t, s, noExpiry)
	broken := MustPutLink(t, s, NewLink("u", "p5", now.Add(10*time.Second)))
	ok, err := s.MarkReauthRequired(c, MustAcquire(t, s, broken, "a", time.Minute), tokenbroker.Reauth{Reason: tokenbroker.ReasonRevoked}, tokenbroker.Record{})
	wantBool(t, "MarkReauthRequired", ok, err, true)

	names := func(links []*tokenbroker.Link) (out []string) {
		for _, l := range links {
			out = append(out, l.UserID+"/"+l.ProviderID)
		}
		return out
	}
	links, err := s.ListLinksExpiringBefore(c, now.Add(5*time.Minute), tokenbroker.ExpiryCursor{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(links), []string{"v/p0", "u/p1", "u/p2"}; !slices.Equal(got, want) {
		t.Fatalf("ListLinksExpiringBefore = %v, want %v", got, want)
	}
	links, err = s.ListLinksExpiringBefore(c, now.Add(5*time.Minute), tokenbroker.ExpiryCursor{}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(links), []string{"v/p0", "u/p1"}; !slices.Equal(got, want) {
		t.Fatalf("ListLinksExpiringBefore(limit 2) = %v, want %v", got, want)
	}
}

func testResealLink(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	exp := MustNow(t, s).Add(time.Hour)
	var ids []int64
	for _, p := range []string{"a", "b", "c"} {
		ids = append(ids, MustPutLink(t, s, NewLink("u", p, exp)).ID)
	}
	l := MustGetLink(t, s, "u", "b")
	r := *l
	r.KeyID = "k2"
	r.Token.AccessToken, r.Token.RefreshToken, r.Token.IDToken = "sealed-at", "sealed-rt", "sealed-idt"
	r.Token.Extra = map[string]string{"refresh_token_expires_in": "sealed"}
	ok, err := s.ResealLink(c, &r)
	wantBool(t, "ResealLink", ok, err, true)
	got := MustGetLink(t, s, "u", "b")
	if got.Generation != l.Generation {
		t.Fatalf("ResealLink bumped the generation to %d", got.Generation)
	}
	if got.KeyID != "k2" {
		t.Fatalf("key id = %q", got.KeyID)
	}
	sameToken(t, got.Token, r.Token)

	// Batches: links not sealed by k2, after an id, by id.
	links, err := s.ListLinksNotSealedBy(c, "k2", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 2 || links[0].ID != ids[0] || links[1].ID != ids[2] {
		t.Fatalf("ListLinksNotSealedBy(k2, 0) = %d links", len(links))
	}
	links, err = s.ListLinksNotSealedBy(c, "k2", ids[0], 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].ID != ids[2] {
		t.Fatalf("ListLinksNotSealedBy(k2, %d, 1) = %v", ids[0], links)
	}
}

func testResealLinkLosesToCommit(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	// The rekey read l; then a refresh commits.
	MustRefresh(t, s, l, 2)
	before := MustGetLink(t, s, "alice", "github")
	r := *l
	r.KeyID = "k9"
	r.Token.AccessToken = "resealed-old"
	ok, err := s.ResealLink(c, &r)
	wantBool(t, "ResealLink(stale generation)", ok, err, false)
	sameLink(t, MustGetLink(t, s, "alice", "github"), before)

	// And a reseal does not make a concurrent commit lose.
	cur := MustGetLink(t, s, "alice", "github")
	lease := MustAcquire(t, s, cur, "a", time.Minute)
	r = *cur
	r.KeyID = "k9"
	ok, err = s.ResealLink(c, &r)
	wantBool(t, "ResealLink", ok, err, true)
	ok, err = s.CommitRefresh(c, lease, refreshed(cur, 3), tokenbroker.Record{})
	wantBool(t, "CommitRefresh after reseal", ok, err, true)
}

func testCountSealedByKey(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	now := MustNow(t, s)
	for i, k := range []string{"k1", "k1", "k2"} {
		l := NewLink("u", fmt.Sprintf("p%d", i), now.Add(time.Hour))
		l.KeyID = k
		MustPutLink(t, s, l)
	}
	for i, k := range []string{"k2", "k3"} {
		r := newAuthRequest(fmt.Sprintf("state-%d", i), now.Add(time.Hour))
		r.KeyID = k
		if err := s.CreateAuthRequest(c, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.CountSealedByKey(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"k1": 2, "k2": 2, "k3": 1}; !maps.Equal(got, want) {
		t.Fatalf("CountSealedByKey = %v, want %v", got, want)
	}
}

func testAPIKeys(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	in := &tokenbroker.APIKey{
		Prefix: "tb_abc", SecretHash: []byte{1, 2, 3}, Name: "ci",
		Scopes: []string{tokenbroker.ScopeTokensRead}, Users: []string{"alice"}, Providers: []string{"github"},
	}
	k, err := s.CreateAPIKey(c, in)
	if err != nil {
		t.Fatal(err)
	}
	if k.ID == 0 || k.CreatedAt.IsZero() || k.Revoked() {
		t.Fatalf("CreateAPIKey = %+v", k)
	}
	got, err := s.GetAPIKeyByPrefix(c, "tb_abc")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != k.ID || got.Name != "ci" || string(got.SecretHash) != "\x01\x02\x03" ||
		!slices.Equal(got.Scopes, in.Scopes) || !slices.Equal(got.Users, in.Users) || !slices.Equal(got.Providers, in.Providers) {
		t.Fatalf("GetAPIKeyByPrefix = %+v", got)
	}
	_, err = s.CreateAPIKey(c, &tokenbroker.APIKey{Prefix: "tb_abc", SecretHash: []byte{9}})
	wantCode(t, err, tokenbroker.ECONFLICT)
	_, err = s.GetAPIKeyByPrefix(c, "tb_nope")
	wantCode(t, err, tokenbroker.ENOTFOUND)

	k2, err := s.CreateAPIKey(c, &tokenbroker.APIKey{Prefix: "tb_def", SecretHash: []byte{4}, Scopes: []string{tokenbroker.ScopeAdmin}})
	if err != nil {
		t.Fatal(err)
	}
	if len(k2.Users) != 0 || len(k2.Providers) != 0 {
		t.Fatalf("unrestricted key = %+v", k2)
	}
	if err := s.RevokeAPIKey(c, k.ID); err != nil {
		t.Fatal(err)
	}
	wantCode(t, s.RevokeAPIKey(c, k2.ID+100), tokenbroker.ENOTFOUND)
	keys, err := s.ListAPIKeys(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].ID != k.ID || !keys[0].Revoked() || keys[1].Revoked() {
		t.Fatalf("ListAPIKeys = %+v", keys)
	}
}

func testConnectSession(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	exp := MustNow(t, s).Add(10 * time.Minute).Truncate(time.Millisecond)
	in := &tokenbroker.ConnectSession{
		ID: "cs-secret", UserID: "alice", Providers: []string{"github", "gitlab"},
		ReturnURL: "https://platform.example/back", CreatedBy: "tb_abc", ExpiresAt: exp,
	}
	if err := s.CreateConnectSession(c, in); err != nil {
		t.Fatal(err)
	}
	wantCode(t, s.CreateConnectSession(c, in), tokenbroker.ECONFLICT)
	got, err := s.GetConnectSession(c, "cs-secret")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "cs-secret" || got.UserID != "alice" || !slices.Equal(got.Providers, in.Providers) ||
		got.ReturnURL != in.ReturnURL || got.CreatedBy != "tb_abc" || !got.ExpiresAt.Equal(exp) ||
		got.CreatedAt.IsZero() || !got.ClaimedAt.IsZero() {
		t.Fatalf("GetConnectSession = %+v", got)
	}
	_, err = s.GetConnectSession(c, "cs-other")
	wantCode(t, err, tokenbroker.ENOTFOUND)
}

func testConnectSessionExpired(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	// Expired by the database clock.
	in := &tokenbroker.ConnectSession{ID: "old", UserID: "alice", ExpiresAt: MustNow(t, s).Add(-time.Second)}
	if err := s.CreateConnectSession(c, in); err != nil {
		t.Fatal(err)
	}
	_, err := s.GetConnectSession(c, "old")
	wantCode(t, err, tokenbroker.ENOTFOUND)
	_, err = s.ClaimConnectSession(c, "old")
	wantCode(t, err, tokenbroker.ENOTFOUND)
}

func testClaimConnectSession(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	in := &tokenbroker.ConnectSession{ID: "cs", UserID: "alice", ExpiresAt: MustNow(t, s).Add(time.Hour)}
	if err := s.CreateConnectSession(c, in); err != nil {
		t.Fatal(err)
	}
	const n = 32
	var wins atomic.Int32
	race(n, func(int) {
		ok, err := s.ClaimConnectSession(c, "cs")
		if err != nil {
			t.Errorf("ClaimConnectSession: %v", err)
		}
		if ok {
			wins.Add(1)
		}
	})
	if got := wins.Load(); got != 1 {
		t.Fatalf("%d of %d concurrent claims won, want exactly 1", got, n)
	}
	got, err := s.GetConnectSession(c, "cs")
	if err != nil || got.ClaimedAt.IsZero() {
		t.Fatalf("GetConnectSession after claim = %+v, %v", got, err)
	}
	_, err = s.ClaimConnectSession(c, "missing")
	wantCode(t, err, tokenbroker.ENOTFOUND)
}

func newAuthRequest(id string, exp time.Time) *tokenbroker.AuthRequest {
	return &tokenbroker.AuthRequest{
		ID: id, Kind: tokenbroker.AuthRequestCode, SessionID: "cs", UserID: "alice", ProviderID: "github",
		Secret: "pkce-verifier", KeyID: "k1", RedirectURI: "http://127.0.0.1/callback",
		ExpiresAt: exp.Truncate(time.Millisecond),
	}
}

func sameAuthRequest(t *testing.T, got, want *tokenbroker.AuthRequest) {
	t.Helper()
	g, w := *got, *want
	if g.CreatedAt.IsZero() {
		t.Fatalf("auth request without CreatedAt: %+v", g)
	}
	g.CreatedAt, w.CreatedAt = time.Time{}, time.Time{}
	if !g.ExpiresAt.Equal(w.ExpiresAt) {
		t.Fatalf("ExpiresAt = %v, want %v", g.ExpiresAt, w.ExpiresAt)
	}
	g.ExpiresAt, w.ExpiresAt = time.Time{}, time.Time{}
	// The store keeps only the hash of a code flow's connect session id.
	if w.SessionID != "" {
		w.SessionID, w.SessionHash = "", tokenbroker.HashID(w.SessionID)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("auth request =\n%+v\nwant\n%+v", g, w)
	}
}

func testAuthRequest(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	now := MustNow(t, s)
	code := newAuthRequest("state-1", now.Add(10*time.Minute))
	if err := s.CreateAuthRequest(c, code); err != nil {
		t.Fatal(err)
	}
	wantCode(t, s.CreateAuthRequest(c, code), tokenbroker.ECONFLICT)
	dev := &tokenbroker.AuthRequest{
		ID: "device-1", Kind: tokenbroker.AuthRequestDevice, UserID: "bob", ProviderID: "github",
		Secret: "device-code", KeyID: "k1", UserCode: "ABCD-EFGH", VerifyURI: "https://github.com/login/device",
		Interval: 5 * time.Second, ExpiresAt: now.Add(15 * time.Minute).Truncate(time.Millisecond),
	}
	if err := s.CreateAuthRequest(c, dev); err != nil {
		t.Fatal(err)
	}
	for _, want := range []*tokenbroker.AuthRequest{code, dev} {
		got, err := s.GetAuthRequest(c, want.ID)
		if err != nil {
			t.Fatal(err)
		}
		sameAuthRequest(t, got, want)
	}
	_, err := s.GetAuthRequest(c, "state-2")
	wantCode(t, err, tokenbroker.ENOTFOUND)
}

func testAuthRequestExpired(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	r := newAuthRequest("old", MustNow(t, s).Add(-time.Second))
	if err := s.CreateAuthRequest(c, r); err != nil {
		t.Fatal(err)
	}
	_, err := s.GetAuthRequest(c, "old")
	wantCode(t, err, tokenbroker.ENOTFOUND)
	_, err = s.ConsumeAuthRequest(c, "old")
	wantCode(t, err, tokenbroker.ENOTFOUND)
}

func testConsumeAuthRequest(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	want := newAuthRequest("state", MustNow(t, s).Add(time.Hour))
	if err := s.CreateAuthRequest(c, want); err != nil {
		t.Fatal(err)
	}
	const n = 32
	got := make(chan *tokenbroker.AuthRequest, n)
	race(n, func(int) {
		r, err := s.ConsumeAuthRequest(c, "state")
		switch {
		case err == nil:
			got <- r
		case !tokenbroker.IsNotFound(err):
			t.Errorf("ConsumeAuthRequest: %v", err)
		}
	})
	close(got)
	var winners []*tokenbroker.AuthRequest
	for r := range got {
		winners = append(winners, r)
	}
	if len(winners) != 1 {
		t.Fatalf("%d of %d concurrent consumers got the request, want exactly 1", len(winners), n)
	}
	sameAuthRequest(t, winners[0], want)
	_, err := s.GetAuthRequest(c, "state")
	wantCode(t, err, tokenbroker.ENOTFOUND)
}

func testResealAuthRequest(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	now := MustNow(t, s)
	for i, k := range []string{"k1", "k2", "k1"} {
		r := newAuthRequest(fmt.Sprintf("state-%d", i), now.Add(time.Hour))
		r.KeyID = k
		if err := s.CreateAuthRequest(c, r); err != nil {
			t.Fatal(err)
		}
	}
	old := newAuthRequest("expired", now.Add(-time.Second))
	if err := s.CreateAuthRequest(c, old); err != nil {
		t.Fatal(err)
	}
	pending, err := s.ListAuthRequestsNotSealedBy(c, "k2", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 2 {
		t.Fatalf("ListAuthRequestsNotSealedBy = %d requests, want the 2 unexpired ones of k1", len(pending))
	}
	for _, r := range pending {
		if r.KeyID != "k1" || r.Secret != "pkce-verifier" {
			t.Fatalf("pending request = %+v", r)
		}
		r.Secret, r.KeyID = "resealed", "k2"
		if err := s.ResealAuthRequest(c, r); err != nil {
			t.Fatalf("ResealAuthRequest: %v", err)
		}
	}
	pending, err = s.ListAuthRequestsNotSealedBy(c, "k2", 10)
	if err != nil || len(pending) != 0 {
		t.Fatalf("after reseal: %d pending, %v", len(pending), err)
	}
	got, err := s.GetAuthRequest(c, "state-0")
	if err != nil {
		t.Fatal(err)
	}
	if got.Secret != "resealed" || got.KeyID != "k2" || got.ID != "state-0" {
		t.Fatalf("resealed request = %+v", got)
	}
	wantCode(t, s.ResealAuthRequest(c, &tokenbroker.AuthRequest{ID: "gone", KeyID: "k2"}), tokenbroker.ENOTFOUND)
}

func testDeleteExpired(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	now := MustNow(t, s)
	for i, d := range []time.Duration{-time.Minute, -time.Second, time.Hour} {
		cs := &tokenbroker.ConnectSession{ID: fmt.Sprintf("cs-%d", i), UserID: "u", ExpiresAt: now.Add(d)}
		if err := s.CreateConnectSession(c, cs); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateAuthRequest(c, newAuthRequest(fmt.Sprintf("ar-%d", i), now.Add(d))); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.DeleteExpired(c)
	if err != nil || n != 4 {
		t.Fatalf("DeleteExpired = %d, %v; want 4", n, err)
	}
	if _, err := s.GetConnectSession(c, "cs-2"); err != nil {
		t.Fatalf("unexpired session deleted: %v", err)
	}
	if _, err := s.GetAuthRequest(c, "ar-2"); err != nil {
		t.Fatalf("unexpired request deleted: %v", err)
	}
	n, err = s.DeleteExpired(c)
	if err != nil || n != 0 {
		t.Fatalf("DeleteExpired again = %d, %v; want 0", n, err)
	}
}

func testAudit(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	base := MustNow(t, s).Truncate(time.Second).Add(-time.Hour)
	var events []tokenbroker.AuditEvent
	for i := range 10 {
		user := "alice"
		if i%2 == 1 {
			user = "bob"
		}
		events = append(events, tokenbroker.AuditEvent{
			Time: base.Add(time.Duration(i) * time.Minute), Actor: "tb_abc", Action: tokenbroker.AuditTokenRead,
			UserID: user, ProviderID: "github", Outcome: "ok", Detail: fmt.Sprint(i),
		})
	}
	events[9].Action = tokenbroker.AuditLinkRefresh
	if err := s.AppendAudit(c, events); err != nil {
		t.Fatal(err)
	}
	// No time: the database clock.
	if err := s.AppendAudit(c, []tokenbroker.AuditEvent{{Actor: "system", Action: tokenbroker.AuditLinkBroken, Outcome: "ok"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(c, nil); err != nil {
		t.Fatal(err)
	}
	details := func(evs []tokenbroker.AuditEvent) (out []string) {
		for _, e := range evs {
			out = append(out, e.Detail)
		}
		return out
	}
	all, err := s.ListAudit(c, tokenbroker.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 11 || all[0].Action != tokenbroker.AuditLinkBroken || all[0].Time.Before(base.Add(time.Hour-time.Minute)) {
		t.Fatalf("ListAudit = %d events, first %+v", len(all), all[0])
	}
	if all[1].Detail != "9" || !all[1].Time.Equal(events[9].Time) || all[1].Actor != "tb_abc" || all[1].UserID != "bob" ||
		all[1].ProviderID != "github" || all[1].Outcome != "ok" || all[1].ID <= all[2].ID {
		t.Fatalf("ListAudit[1] = %+v", all[1])
	}
	for _, tc := range []struct {
		name string
		f    tokenbroker.AuditFilter
		want []string
	}{
		{"user", tokenbroker.AuditFilter{UserID: "alice", Limit: 3}, []string{"8", "6", "4"}},
		{"action", tokenbroker.AuditFilter{Action: tokenbroker.AuditLinkRefresh}, []string{"9"}},
		{"provider", tokenbroker.AuditFilter{ProviderID: "gitlab"}, nil},
		{"since until", tokenbroker.AuditFilter{Since: base.Add(2 * time.Minute), Until: base.Add(5 * time.Minute)}, []string{"4", "3", "2"}},
		{"before id", tokenbroker.AuditFilter{BeforeID: all[8].ID, Limit: 2}, []string{"1", "0"}},
	} {
		got, err := s.ListAudit(c, tc.f)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !slices.Equal(details(got), tc.want) {
			t.Errorf("ListAudit(%s) = %v, want %v", tc.name, details(got), tc.want)
		}
	}
}

// drain empties a coalesced channel.
func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func testSignaler(t *testing.T, s tokenbroker.Store) {
	sig, ok := s.(tokenbroker.Signaler)
	if !ok {
		t.Skip("store does not implement tokenbroker.Signaler")
	}
	c := ctx(t)
	l := mustLink(t, s)
	other := MustPutLink(t, s, NewLink("bob", "github", l.Token.Expiry))
	ch, cancel := sig.Subscribe(l.ID)
	defer cancel()
	otherCh, cancelOther := sig.Subscribe(other.ID)
	defer cancelOther()

	var lease tokenbroker.Lease
	acquire := func() (bool, error) {
		cur := MustGetLink(t, s, "alice", "github")
		g, err := s.AcquireLease(c, tokenbroker.LeaseRequest{LinkID: cur.ID, Generation: cur.Generation, Owner: "a", TTL: time.Minute})
		if err != nil {
			return false, err
		}
		lease = g.Lease
		return g.Won, nil
	}
	steps := []struct {
		name string
		do   func() (bool, error)
	}{
		{"AcquireLease", acquire},
		{"ReleaseLease", func() (bool, error) { return s.ReleaseLease(c, lease, tokenbroker.Release{}, tokenbroker.Record{}) }},
		{"AcquireLease", acquire},
		{"CommitRefresh", func() (bool, error) {
			return s.CommitRefresh(c, lease, refreshed(l, 2), tokenbroker.Record{})
		}},
		{"AcquireLease", acquire},
		{"MarkReauthRequired", func() (bool, error) {
			return s.MarkReauthRequired(c, lease, tokenbroker.Reauth{Reason: tokenbroker.ReasonRevoked}, tokenbroker.Record{})
		}},
		{"PutLink", func() (bool, error) {
			_, err := s.PutLink(c, NewLink("alice", "github", l.Token.Expiry), tokenbroker.Record{})
			return true, err
		}},
		{"DeleteLink", func() (bool, error) { return true, s.DeleteLink(c, "alice", "github", tokenbroker.Record{}) }},
	}
	for _, st := range steps {
		drain(ch)
		ok, err := st.do()
		wantBool(t, st.name, ok, err, true)
		if st.name == "AcquireLease" {
			continue // taking a lease need not signal
		}
		await.Signal(t, st.name, ch)
	}
	// Cancelled subscriptions are left alone; the other link's subscriber
	// is woken only by its own changes.
	cancel()
	drain(otherCh)
	MustRefresh(t, s, other, 2)
	await.Signal(t, "CommitRefresh(other)", otherCh)
}
