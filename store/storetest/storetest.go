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
)

// RunConformance runs the conformance suite. open returns a fresh,
// migrated, empty store and arranges for it to be closed when t ends.
func RunConformance(t *testing.T, open func(t *testing.T) tokenbroker.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s tokenbroker.Store)
	}{
		{"Basics", testBasics},
		{"GetLinkMissing", testGetLinkMissing},
		{"PutLinkRoundTrip", testPutLinkRoundTrip},
		{"PutLinkValidates", testPutLinkValidates},
		{"PutLinkExistingBumpsGenerationAndReactivates", testPutLinkExisting},
		{"ListLinks", testListLinks},
		{"DeleteLink", testDeleteLink},
		{"AcquireLease", testAcquireLease},
		{"AcquireLeaseRace64", testAcquireLeaseRace},
		{"ExpiredLeaseTakeover", testExpiredLeaseTakeover},
		{"ReleaseLeaseOnlyByOwner", testReleaseLease},
		{"CommitRefresh", testCommitRefresh},
		{"CommitRefreshStaleGenerationChangesNothing", testCommitRefreshStale},
		{"CommitRefreshRace", testCommitRefreshRace},
		{"CommitRefreshKeepsAccountWhenEmpty", testCommitRefreshAccount},
		{"MarkReauthRequired", testMarkReauth},
		{"MarkReauthRequiredStaleGenerationChangesNothing", testMarkReauthStale},
		{"CommitAfterMarkReactivates", testCommitAfterMark},
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
	tests = append(tests, outboxTests...)
	tests = append(tests, consoleTests...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
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
			Scopes:       []string{"repo", "read:user"},
			Extra:        map[string]string{"refresh_token_expires_in": "15897600"},
		},
	}
}

// MustPutLink puts l and returns the stored link.
func MustPutLink(t testing.TB, s tokenbroker.Store, l *tokenbroker.Link) *tokenbroker.Link {
	t.Helper()
	out, err := s.PutLink(context.Background(), l)
	if err != nil {
		t.Fatalf("PutLink(%s/%s): %v", l.UserID, l.ProviderID, err)
	}
	return out
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
		!got.Expiry.Equal(want.Expiry) || !slices.Equal(got.Scopes, want.Scopes) ||
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
		for _, tm := range []*time.Time{&p.LeaseUntil, &p.CreatedAt, &p.UpdatedAt, &p.RefreshedAt} {
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
	if out.CreatedAt.IsZero() || out.UpdatedAt.IsZero() || !out.RefreshedAt.IsZero() || !out.LeaseUntil.IsZero() || out.LeaseOwner != "" {
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
		_, err := s.PutLink(ctx(t), l)
		wantCode(t, err, tokenbroker.EINVALID)
	}
}

func testPutLinkExisting(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	first := mustLink(t, s)
	ok, err := s.AcquireLease(c, first.ID, first.Generation, "replica-a", time.Minute)
	wantBool(t, "AcquireLease", ok, err, true)
	ok, err = s.MarkReauthRequired(c, first.ID, first.Generation, "invalid_grant")
	wantBool(t, "MarkReauthRequired", ok, err, true)

	again := NewLink("alice", "github", MustNow(t, s).Add(2*time.Hour))
	again.Token.AccessToken, again.Token.RefreshToken = "at-new", "rt-new"
	again.AccountLogin = "renamed"
	out := MustPutLink(t, s, again)
	if out.ID != first.ID || out.Generation != first.Generation+1 {
		t.Fatalf("PutLink again = id %d gen %d; want id %d gen %d", out.ID, out.Generation, first.ID, first.Generation+1)
	}
	if out.State != tokenbroker.LinkActive || out.FailureReason != "" || out.LeaseOwner != "" || !out.LeaseUntil.IsZero() {
		t.Fatalf("PutLink again did not reactivate and clear the lease: %+v", out)
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
	if err := s.DeleteLink(ctx(t), "alice", "github"); err != nil {
		t.Fatal(err)
	}
	_, err := s.GetLink(ctx(t), "alice", "github")
	wantCode(t, err, tokenbroker.ENOTFOUND)
	wantCode(t, s.DeleteLink(ctx(t), "alice", "github"), tokenbroker.ENOTFOUND)
}

func testAcquireLease(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	before := MustNow(t, s)

	ok, err := s.AcquireLease(c, l.ID, l.Generation+1, "a", time.Minute)
	wantBool(t, "AcquireLease(wrong generation)", ok, err, false)
	ok, err = s.AcquireLease(c, l.ID+1000, l.Generation, "a", time.Minute)
	wantBool(t, "AcquireLease(missing link)", ok, err, false)

	ok, err = s.AcquireLease(c, l.ID, l.Generation, "a", time.Minute)
	wantBool(t, "AcquireLease", ok, err, true)
	got := MustGetLink(t, s, "alice", "github")
	if got.LeaseOwner != "a" || got.Generation != l.Generation {
		t.Fatalf("lease owner %q gen %d, want a, %d", got.LeaseOwner, got.Generation, l.Generation)
	}
	if d := got.LeaseUntil.Sub(before); d < 55*time.Second || d > 2*time.Minute {
		t.Fatalf("lease_until is %v after the database's now, want about a minute", d)
	}

	// A live lease excludes everyone, its owner too.
	ok, err = s.AcquireLease(c, l.ID, l.Generation, "b", time.Minute)
	wantBool(t, "AcquireLease(live lease, other owner)", ok, err, false)
	ok, err = s.AcquireLease(c, l.ID, l.Generation, "a", time.Minute)
	wantBool(t, "AcquireLease(live lease, same owner)", ok, err, false)
	if got := MustGetLink(t, s, "alice", "github"); got.LeaseOwner != "a" {
		t.Fatalf("lease owner = %q after lost acquisitions, want a", got.LeaseOwner)
	}

	_, err = s.AcquireLease(c, l.ID, l.Generation, "", time.Minute)
	wantCode(t, err, tokenbroker.EINVALID)
}

func testAcquireLeaseRace(t *testing.T, s tokenbroker.Store) {
	l := mustLink(t, s)
	c := ctx(t)
	const n = 64
	var (
		wg     sync.WaitGroup
		start  = make(chan struct{})
		wins   atomic.Int32
		winner atomic.Value
		errs   = make(chan error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			owner := fmt.Sprintf("replica-%d", i)
			ok, err := s.AcquireLease(c, l.ID, l.Generation, owner, time.Minute)
			if err != nil {
				errs <- err
				return
			}
			if ok {
				wins.Add(1)
				winner.Store(owner)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("AcquireLease: %v", err)
	}
	if got := wins.Load(); got != 1 {
		t.Fatalf("%d of %d racing AcquireLease calls won, want exactly 1", got, n)
	}
	if got := MustGetLink(t, s, "alice", "github"); got.LeaseOwner != winner.Load() {
		t.Fatalf("lease owner = %q, want the winner %q", got.LeaseOwner, winner.Load())
	}
}

func testExpiredLeaseTakeover(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	// A negative TTL makes a lease that is already past its expiry: a
	// holder that died.
	ok, err := s.AcquireLease(c, l.ID, l.Generation, "dead", -time.Second)
	wantBool(t, "AcquireLease(dead holder)", ok, err, true)
	ok, err = s.AcquireLease(c, l.ID, l.Generation, "b", time.Minute)
	wantBool(t, "AcquireLease(take over expired lease)", ok, err, true)
	if got := MustGetLink(t, s, "alice", "github"); got.LeaseOwner != "b" {
		t.Fatalf("lease owner = %q, want b", got.LeaseOwner)
	}
	// The dead holder's release no longer applies.
	ok, err = s.ReleaseLease(c, l.ID, "dead")
	wantBool(t, "ReleaseLease(previous owner)", ok, err, false)
}

func testReleaseLease(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	ok, err := s.AcquireLease(c, l.ID, l.Generation, "a", time.Minute)
	wantBool(t, "AcquireLease", ok, err, true)
	leased := MustGetLink(t, s, "alice", "github")

	ok, err = s.ReleaseLease(c, l.ID, "b")
	wantBool(t, "ReleaseLease(non-owner)", ok, err, false)
	sameLink(t, MustGetLink(t, s, "alice", "github"), leased)

	ok, err = s.ReleaseLease(c, l.ID, "a")
	wantBool(t, "ReleaseLease(owner)", ok, err, true)
	got := MustGetLink(t, s, "alice", "github")
	if got.LeaseOwner != "" || !got.LeaseUntil.IsZero() || got.Generation != l.Generation {
		t.Fatalf("after release: owner %q until %v gen %d", got.LeaseOwner, got.LeaseUntil, got.Generation)
	}
	ok, err = s.AcquireLease(c, l.ID, l.Generation, "b", time.Minute)
	wantBool(t, "AcquireLease after release", ok, err, true)
}

func refreshed(l *tokenbroker.Link, n int) *tokenbroker.Link {
	r := *l
	r.Token.AccessToken = fmt.Sprintf("at-%d", n)
	r.Token.RefreshToken = fmt.Sprintf("rt-%d", n)
	r.Token.IDToken = ""
	r.Token.Expiry = l.Token.Expiry.Add(time.Duration(n) * time.Hour)
	r.Token.Scopes = []string{"repo"}
	r.Token.Extra = map[string]string{"n": fmt.Sprint(n)}
	r.KeyID = "k2"
	return &r
}

func testCommitRefresh(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	ok, err := s.AcquireLease(c, l.ID, l.Generation, "a", time.Minute)
	wantBool(t, "AcquireLease", ok, err, true)
	r := refreshed(l, 2)
	ok, err = s.CommitRefresh(c, r)
	wantBool(t, "CommitRefresh", ok, err, true)
	got := MustGetLink(t, s, "alice", "github")
	if got.Generation != l.Generation+1 {
		t.Fatalf("generation = %d, want %d", got.Generation, l.Generation+1)
	}
	if got.LeaseOwner != "" || !got.LeaseUntil.IsZero() {
		t.Fatalf("lease not cleared: %q %v", got.LeaseOwner, got.LeaseUntil)
	}
	if got.RefreshedAt.IsZero() || got.KeyID != "k2" {
		t.Fatalf("refreshed_at %v key %q", got.RefreshedAt, got.KeyID)
	}
	sameToken(t, got.Token, r.Token)
	// The new generation can be leased again.
	ok, err = s.AcquireLease(c, l.ID, got.Generation, "b", time.Minute)
	wantBool(t, "AcquireLease(new generation)", ok, err, true)
}

func testCommitRefreshStale(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	ok, err := s.CommitRefresh(c, refreshed(l, 2))
	wantBool(t, "CommitRefresh", ok, err, true)
	ok, err = s.AcquireLease(c, l.ID, l.Generation+1, "a", time.Minute)
	wantBool(t, "AcquireLease", ok, err, true)
	before := MustGetLink(t, s, "alice", "github")

	// A loser commits with the generation it read before the winner.
	ok, err = s.CommitRefresh(c, refreshed(l, 3))
	wantBool(t, "CommitRefresh(stale generation)", ok, err, false)
	sameLink(t, MustGetLink(t, s, "alice", "github"), before)
}

func testCommitRefreshRace(t *testing.T, s tokenbroker.Store) {
	l := mustLink(t, s)
	c := ctx(t)
	const n = 16
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		won   = make(chan int, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			ok, err := s.CommitRefresh(c, refreshed(l, i+2))
			if err != nil {
				t.Errorf("CommitRefresh: %v", err)
			}
			if ok {
				won <- i + 2
			}
		})
	}
	close(start)
	wg.Wait()
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
	c := ctx(t)
	l := mustLink(t, s)
	r := refreshed(l, 2)
	r.AccountID, r.AccountLogin = "", ""
	ok, err := s.CommitRefresh(c, r)
	wantBool(t, "CommitRefresh", ok, err, true)
	got := MustGetLink(t, s, "alice", "github")
	if got.AccountID != l.AccountID || got.AccountLogin != l.AccountLogin {
		t.Fatalf("account = %q %q, want kept %q %q", got.AccountID, got.AccountLogin, l.AccountID, l.AccountLogin)
	}
	r = refreshed(got, 3)
	r.AccountLogin = "renamed"
	ok, err = s.CommitRefresh(c, r)
	wantBool(t, "CommitRefresh", ok, err, true)
	if got := MustGetLink(t, s, "alice", "github"); got.AccountLogin != "renamed" || got.AccountID != l.AccountID {
		t.Fatalf("account = %q %q", got.AccountID, got.AccountLogin)
	}
}

func testMarkReauth(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	ok, err := s.AcquireLease(c, l.ID, l.Generation, "a", time.Minute)
	wantBool(t, "AcquireLease", ok, err, true)
	ok, err = s.MarkReauthRequired(c, l.ID, l.Generation, "invalid_grant: revoked")
	wantBool(t, "MarkReauthRequired", ok, err, true)
	got := MustGetLink(t, s, "alice", "github")
	if got.State != tokenbroker.LinkReauthRequired || got.FailureReason != "invalid_grant: revoked" {
		t.Fatalf("state %q reason %q", got.State, got.FailureReason)
	}
	if got.Generation != l.Generation || got.LeaseOwner != "" || !got.LeaseUntil.IsZero() {
		t.Fatalf("gen %d lease %q %v; want generation kept and lease cleared", got.Generation, got.LeaseOwner, got.LeaseUntil)
	}
	sameToken(t, got.Token, l.Token)
	// A broken link cannot be leased.
	ok, err = s.AcquireLease(c, l.ID, l.Generation, "b", time.Minute)
	wantBool(t, "AcquireLease(reauth_required)", ok, err, false)
	// It stays out of the expiry scan.
	links, err := s.ListLinksExpiringBefore(c, l.Token.Expiry.Add(time.Hour), 10)
	if err != nil || len(links) != 0 {
		t.Fatalf("ListLinksExpiringBefore = %d links, %v; want none", len(links), err)
	}
}

func testMarkReauthStale(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	ok, err := s.CommitRefresh(c, refreshed(l, 2))
	wantBool(t, "CommitRefresh", ok, err, true)
	before := MustGetLink(t, s, "alice", "github")
	// A loser whose refresh failed with invalid_grant must not break the
	// winner's fresh token (I4).
	ok, err = s.MarkReauthRequired(c, l.ID, l.Generation, "invalid_grant")
	wantBool(t, "MarkReauthRequired(stale generation)", ok, err, false)
	sameLink(t, MustGetLink(t, s, "alice", "github"), before)
}

func testCommitAfterMark(t *testing.T, s tokenbroker.Store) {
	// A lease holder that outlived its lease commits after a successor,
	// whose refresh token was already spent, marked the same generation:
	// the tokens are fresh, so the commit wins and reactivates the link.
	c := ctx(t)
	l := mustLink(t, s)
	ok, err := s.MarkReauthRequired(c, l.ID, l.Generation, "invalid_grant")
	wantBool(t, "MarkReauthRequired", ok, err, true)
	ok, err = s.CommitRefresh(c, refreshed(l, 2))
	wantBool(t, "CommitRefresh after mark", ok, err, true)
	got := MustGetLink(t, s, "alice", "github")
	if got.State != tokenbroker.LinkActive || got.FailureReason != "" || got.Generation != l.Generation+1 {
		t.Fatalf("state %q reason %q gen %d", got.State, got.FailureReason, got.Generation)
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
	ok, err := s.MarkReauthRequired(c, broken.ID, broken.Generation, "x")
	wantBool(t, "MarkReauthRequired", ok, err, true)

	names := func(links []*tokenbroker.Link) (out []string) {
		for _, l := range links {
			out = append(out, l.UserID+"/"+l.ProviderID)
		}
		return out
	}
	links, err := s.ListLinksExpiringBefore(c, now.Add(5*time.Minute), 10)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(links), []string{"v/p0", "u/p1", "u/p2"}; !slices.Equal(got, want) {
		t.Fatalf("ListLinksExpiringBefore = %v, want %v", got, want)
	}
	links, err = s.ListLinksExpiringBefore(c, now.Add(5*time.Minute), 2)
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
	ok, err := s.CommitRefresh(c, refreshed(l, 2))
	wantBool(t, "CommitRefresh", ok, err, true)
	before := MustGetLink(t, s, "alice", "github")
	r := *l
	r.KeyID = "k9"
	r.Token.AccessToken = "resealed-old"
	ok, err = s.ResealLink(c, &r)
	wantBool(t, "ResealLink(stale generation)", ok, err, false)
	sameLink(t, MustGetLink(t, s, "alice", "github"), before)

	// And a reseal does not make a concurrent commit lose.
	cur := MustGetLink(t, s, "alice", "github")
	r = *cur
	r.KeyID = "k9"
	ok, err = s.ResealLink(c, &r)
	wantBool(t, "ResealLink", ok, err, true)
	ok, err = s.CommitRefresh(c, refreshed(cur, 3))
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
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		wins  atomic.Int32
	)
	for range n {
		wg.Go(func() {
			<-start
			ok, err := s.ClaimConnectSession(c, "cs")
			if err != nil {
				t.Errorf("ClaimConnectSession: %v", err)
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
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
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		got   = make(chan *tokenbroker.AuthRequest, n)
	)
	for range n {
		wg.Go(func() {
			<-start
			r, err := s.ConsumeAuthRequest(c, "state")
			switch {
			case err == nil:
				got <- r
			case !tokenbroker.IsNotFound(err):
				t.Errorf("ConsumeAuthRequest: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
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

// wait waits for a signal on ch, failing after a generous bound.
func wait(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("no signal after %s", what)
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

	steps := []struct {
		name string
		do   func() (bool, error)
	}{
		{"AcquireLease", func() (bool, error) { return s.AcquireLease(c, l.ID, l.Generation, "a", time.Minute) }},
		{"ReleaseLease", func() (bool, error) { return s.ReleaseLease(c, l.ID, "a") }},
		{"CommitRefresh", func() (bool, error) { return s.CommitRefresh(c, refreshed(l, 2)) }},
		{"MarkReauthRequired", func() (bool, error) { return s.MarkReauthRequired(c, l.ID, l.Generation+1, "x") }},
		{"PutLink", func() (bool, error) {
			_, err := s.PutLink(c, NewLink("alice", "github", l.Token.Expiry))
			return true, err
		}},
		{"DeleteLink", func() (bool, error) { return true, s.DeleteLink(c, "alice", "github") }},
	}
	for _, st := range steps {
		drain(ch)
		ok, err := st.do()
		wantBool(t, st.name, ok, err, true)
		if st.name == "AcquireLease" {
			continue // taking a lease need not signal
		}
		wait(t, st.name, ch)
	}
	// Cancelled subscriptions are left alone; the other link's subscriber
	// is woken only by its own changes.
	cancel()
	drain(otherCh)
	ok, err := s.CommitRefresh(c, refreshed(other, 2))
	wantBool(t, "CommitRefresh(other)", ok, err, true)
	wait(t, "CommitRefresh(other)", otherCh)
}
