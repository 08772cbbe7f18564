package refresh_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/refresh"
	"github.com/tokenbroker/tokenbroker/store/storetest"
)

var kinds = []string{"sqlite", "postgres"}

// TestHerd is I1, I2 and I5 together: several replicas, many callers each,
// the token expires several times; each expiry costs exactly one provider
// call, reuse detection never fires, and every caller of a round gets the
// same fresh token. Removing the lease (AcquireLease always winning) makes
// RefreshCalls exceed the rounds and trips reuse detection.
func TestHerd(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			const replicas, callers, rounds = 3, 40, 3
			e := MustEnv(t, envOptions{kind: kind, replicas: replicas,
				idp: fakeidp.Config{Faults: fakeidp.Faults{Latency: 30 * time.Millisecond}}})
			cs := make([]*refresh.Coordinator, replicas)
			for i := range cs {
				cs[i] = e.coordinator(i, nil, nil)
			}
			e.seed("u1")
			before := e.idp.Stats()
			for round := 1; round <= rounds; round++ {
				e.clock.Advance(2 * time.Hour) // past expiry
				tokens := make([]string, replicas*callers)
				errs := make([]error, replicas*callers)
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i := range replicas * callers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
						defer cancel()
						tok, err := cs[i%replicas].Token(ctx, providerID, "u1", 0)
						if err == nil {
							tokens[i] = tok.AccessToken
						}
						errs[i] = err
					}()
				}
				close(start)
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("round %d caller %d: %v", round, i, err)
					}
					if tokens[i] != tokens[0] {
						t.Fatalf("round %d: caller %d got a different token than caller 0", round, i)
					}
				}
				if tokens[0] == "" {
					t.Fatalf("round %d: empty token", round)
				}
				st := e.idp.Stats()
				if got := st.RefreshCalls - before.RefreshCalls; got != int64(round) {
					t.Fatalf("after round %d: provider refresh calls = %d, want %d (I1)", round, got, round)
				}
			}
			st := e.idp.Stats()
			if st.ReuseDetections != before.ReuseDetections {
				t.Fatalf("reuse detections = %d, want 0 (I2)", st.ReuseDetections-before.ReuseDetections)
			}
			if l := e.link("u1"); l.State != tokenbroker.LinkActive || l.Generation != 1+rounds {
				t.Fatalf("link state %s generation %d, want active %d", l.State, l.Generation, 1+rounds)
			}
		})
	}
}

// TestFastPathNoWrite: a token valid beyond the refresh-ahead window is
// returned with no provider call and no write (step 1).
func TestFastPathNoWrite(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "sqlite", refreshAhead: 5 * time.Minute})
	c := e.coordinator(0, nil, nil)
	l0, tok := e.seed("u1")
	got, err := c.Token(context.Background(), providerID, "u1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessToken != tok.AccessToken || got.RefreshToken != "" {
		t.Fatalf("fast path returned the wrong token or leaked the refresh token")
	}
	if l := e.link("u1"); l.Generation != l0.Generation || !l.UpdatedAt.Equal(l0.UpdatedAt) || l.LeaseOwner != "" {
		t.Fatalf("fast path wrote to the link")
	}
	if e.idp.Stats().RefreshCalls != 0 {
		t.Fatal("fast path called the provider")
	}
	// min_valid beyond the remaining lifetime forces a refresh.
	got, err = c.Token(context.Background(), providerID, "u1", 90*time.Minute)
	if err == nil || tokenbroker.ErrorCode(err) != tokenbroker.EINVALID {
		t.Fatalf("min_valid longer than the provider's lifetime: got %v, want invalid_request", err)
	}
	_ = got
}

// TestStaleWhileRevalidate: inside the refresh-ahead window, while another
// replica holds the lease, a caller gets the current, still-valid token at
// once and never waits (step 2). Without a foreign lease the caller
// refreshes itself.
func TestStaleWhileRevalidate(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := MustEnv(t, envOptions{kind: kind, replicas: 2, refreshAhead: 10 * time.Minute})
			c := e.coordinator(0, nil, func(cfg *refresh.Config) { cfg.PollInterval = time.Hour })
			l, tok := e.seed("u1")
			e.clock.Advance(55 * time.Minute) // 5 minutes left: inside the window
			lease := storetest.MustAcquire(t, e.stores[1], l, "other-replica", time.Minute)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got, err := c.Token(ctx, providerID, "u1", 0)
			if err != nil {
				t.Fatal(err)
			}
			if got.AccessToken != tok.AccessToken {
				t.Fatal("expected the current token while another replica refreshes")
			}
			if n := e.idp.Stats().RefreshCalls; n != 0 {
				t.Fatalf("provider calls = %d, want 0", n)
			}
			if _, err := e.stores[1].ReleaseLease(context.Background(), lease, tokenbroker.Release{}, tokenbroker.Record{}); err != nil {
				t.Fatal(err)
			}
			got, err = c.Token(ctx, providerID, "u1", 0)
			if err != nil {
				t.Fatal(err)
			}
			if got.AccessToken == tok.AccessToken || e.idp.Stats().RefreshCalls != 1 {
				t.Fatal("expected a refresh inside the window without a foreign lease")
			}
		})
	}
}

// TestWaitersWokenBySignal (I5): with the poll fallback effectively off,
// callers of another replica waiting for the lease holder are woken by the
// link's signal and all get the new token. Removing the signal (no
// Subscribe) leaves them waiting until the lease expiry, past their
// deadline.
func TestWaitersWokenBySignal(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := MustEnv(t, envOptions{kind: kind, replicas: 2})
			gate := newGated(e.prov)
			holder := e.coordinator(0, gate, func(cfg *refresh.Config) { cfg.LeaseTTL = time.Minute; cfg.ProviderTimeout = 20 * time.Second })
			lost := &lostAcquisitionSpy{replicaStore: e.stores[1], first: make(chan struct{})}
			waiter := e.coordinator(1, nil, func(cfg *refresh.Config) {
				cfg.Store = lost
				cfg.PollInterval = time.Hour
				cfg.LeaseTTL = time.Minute
				cfg.ProviderTimeout = 20 * time.Second
			})
			e.seedExpired("u1")

			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			holderTok := make(chan string, 1)
			askInBackground(ctx, t, holder, "u1", "holder", holderTok)
			recv(t, gate.entered, "the holder's provider call")

			const n = 20
			results := make(chan string, n)
			wctx, wcancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer wcancel()
			for range n {
				askInBackground(wctx, t, waiter, "u1", "waiter", results)
			}
			// Once the waiters' flight has lost the lease to the holder
			// (it subscribed before its first read), only the commit's
			// signal can wake it in time.
			recv(t, lost.first, "the waiters' flight to lose the lease")
			close(gate.release)
			want := <-holderTok
			for range n {
				if got := <-results; got != want || got == "" {
					t.Fatalf("waiter got %q, want the holder's token", got)
				}
			}
			if calls := e.idp.Stats().RefreshCalls; calls != 1 {
				t.Fatalf("provider calls = %d, want 1", calls)
			}
			if waiter.Stats().Waits == 0 {
				t.Fatal("the waiters never waited: the signal path was not exercised")
			}
		})
	}
}

// TestCallerGivingUpDoesNotAbandonRefresh (I2): the provider call runs on a
// detached context. A caller that gives up early gets a definite error,
// the refresh still completes and is committed, and the next caller gets
// the new token with no second provider call. With the caller's context
// passed to the provider, the call is cancelled and the next caller has to
// refresh again.
func TestCallerGivingUpDoesNotAbandonRefresh(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "sqlite", idp: fakeidp.Config{Faults: fakeidp.Faults{Latency: 300 * time.Millisecond}}})
	c := e.coordinator(0, nil, nil)
	l, _ := e.seedExpired("u1")
	sig, cancelSig := e.stores[0].Subscribe(l.ID)
	defer cancelSig()

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := c.Token(ctx, providerID, "u1", 0)
	cancel()
	if !errors.Is(err, tokenbroker.ErrProviderUnavailable) {
		t.Fatalf("caller that gave up: got %v, want ErrProviderUnavailable", err)
	}
	// The lease taken, then the commit: wait for the commit's signal.
	for e.link("u1").Generation == l.Generation {
		recv(t, sig, "the detached refresh's commit")
	}
	if _, err := c.Token(context.Background(), providerID, "u1", 0); err != nil {
		t.Fatal(err)
	}
	if st := e.idp.Stats(); st.RefreshCalls != 1 || st.ReuseDetections != 0 {
		t.Fatalf("refresh calls %d reuse %d, want 1 and 0", st.RefreshCalls, st.ReuseDetections)
	}
}

// TestCommitRetriedAfterDatabaseError (I2): a refreshed token whose commit
// hits a transient database error is kept in memory and the commit is
// retried; the rotated refresh token is never lost and never re-sent.
// Without the retry, the next caller re-sends the old refresh token and
// reuse detection revokes the family.
func TestCommitRetriedAfterDatabaseError(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "sqlite"})
	fs := &faultyStore{replicaStore: e.stores[0]}
	fs.commitFailures.Store(2)
	c := e.coordinator(0, nil, func(cfg *refresh.Config) {
		cfg.Store = fs
		cfg.CommitRetryInterval = time.Millisecond
	})
	l, _ := e.seedExpired("u1")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	tok, err := c.Token(ctx, providerID, "u1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Token(ctx, providerID, "u1", 0); err != nil {
		t.Fatal(err)
	}
	got := e.link("u1")
	if got.Generation != l.Generation+1 || got.Token.AccessToken != tok.AccessToken {
		t.Fatal("the refreshed token was not committed")
	}
	if st := e.idp.Stats(); st.RefreshCalls != 1 || st.ReuseDetections != 0 {
		t.Fatalf("refresh calls %d reuse %d, want 1 and 0", st.RefreshCalls, st.ReuseDetections)
	}
	if c.Stats().CommitRetries != 2 {
		t.Fatalf("commit retries = %d, want 2", c.Stats().CommitRetries)
	}
}

// TestCommitNeverReplacesNewerGeneration (I3): a token imported while a
// refresh is under way is newer; the refresh's commit loses the CAS and the
// imported token stands and is returned.
func TestCommitNeverReplacesNewerGeneration(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := MustEnv(t, envOptions{kind: kind})
			gate := newGated(e.prov)
			c := e.coordinator(0, gate, nil)
			l, _ := e.seedExpired("u1")
			got := make(chan *tokenbroker.Token, 1)
			go func() {
				tok, err := c.Token(context.Background(), providerID, "u1", 0)
				if err != nil {
					t.Error(err)
				}
				got <- tok
			}()
			recv(t, gate.entered, "the provider call")
			imported, err := e.idp.IssueToken("u1")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.stores[0].PutLink(context.Background(), &tokenbroker.Link{UserID: "u1", ProviderID: providerID,
				Token: tokenbroker.Token{AccessToken: imported.AccessToken, RefreshToken: imported.RefreshToken, Expiry: imported.Expiry}}, tokenbroker.Record{}); err != nil {
				t.Fatal(err)
			}
			close(gate.release)
			tok := <-got
			if tok == nil || tok.AccessToken != imported.AccessToken {
				t.Fatal("caller did not get the newer, imported token")
			}
			cur := e.link("u1")
			if cur.Token.AccessToken != imported.AccessToken || cur.Generation != l.Generation+1 || cur.LeaseOwner != "" {
				t.Fatalf("the refresh replaced a newer generation (gen %d)", cur.Generation)
			}
			if c.Stats().LostCommits != 1 {
				t.Fatalf("lost commits = %d, want 1", c.Stats().LostCommits)
			}
		})
	}
}

// TestFailedRefreshKeepsAnotherWritersToken (I4): the provider rejects our
// refresh token because another writer already spent it and stored the
// result. The coordinator re-reads, sees the generation moved and returns
// the other writer's token; the link is not marked broken.
func TestFailedRefreshKeepsAnotherWritersToken(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := MustEnv(t, envOptions{kind: kind, idp: fakeidp.Config{DisableReuseDetection: true}})
			gate := newGated(e.prov)
			c := e.coordinator(0, gate, nil)
			l, seeded := e.seedExpired("u1")
			got := make(chan error, 1)
			var tok *tokenbroker.Token
			go func() {
				var err error
				tok, err = c.Token(context.Background(), providerID, "u1", 0)
				got <- err
			}()
			recv(t, gate.entered, "the provider call")
			// Another writer (a system outside the lease) spends the same
			// refresh token and stores the result.
			other, err := e.prov.Refresh(context.Background(), seeded.RefreshToken)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.stores[0].PutLink(context.Background(), &tokenbroker.Link{UserID: "u1", ProviderID: providerID, Token: *other}, tokenbroker.Record{}); err != nil {
				t.Fatal(err)
			}
			close(gate.release) // our refresh now gets invalid_grant
			if err := <-got; err != nil {
				t.Fatalf("caller: %v", err)
			}
			if tok.AccessToken != other.AccessToken {
				t.Fatal("caller did not get the other writer's token")
			}
			cur := e.link("u1")
			if cur.State != tokenbroker.LinkActive || cur.Token.AccessToken != other.AccessToken || cur.Generation != l.Generation+1 {
				t.Fatalf("link state %s: a failed refresh cleared another writer's token", cur.State)
			}
		})
	}
}

// TestReauthRequiredWhenGrantRevoked: the provider truly rejects the
// current grant; the link is marked reauth_required with the provider's
// reason, once, and later callers get ErrReauthRequired without a call.
func TestReauthRequiredWhenGrantRevoked(t *testing.T) {
	for _, flavor := range []fakeidp.Flavor{fakeidp.FlavorStandard, fakeidp.FlavorGitHub} {
		t.Run(string(flavor), func(t *testing.T) {
			e := MustEnv(t, envOptions{kind: "sqlite", idp: fakeidp.Config{Flavor: flavor}})
			c := e.coordinator(0, nil, nil)
			_, seeded := e.seed("u1")
			e.idp.RevokeFamilyOf(seeded.RefreshToken)
			e.clock.Advance(2 * time.Hour)
			_, err := c.Token(context.Background(), providerID, "u1", 0)
			var re *tokenbroker.ReauthRequiredError
			if !errors.As(err, &re) || re.Reason == "" {
				t.Fatalf("got %v, want ReauthRequiredError with a reason", err)
			}
			cur := e.link("u1")
			if cur.State != tokenbroker.LinkReauthRequired || cur.FailureReason == "" || cur.LeaseOwner != "" {
				t.Fatalf("link state %s reason %q lease %q", cur.State, cur.FailureReason, cur.LeaseOwner)
			}
			calls := e.idp.Stats().RefreshCalls
			if _, err := c.Token(context.Background(), providerID, "u1", 0); !errors.Is(err, tokenbroker.ErrReauthRequired) {
				t.Fatalf("second call: %v", err)
			}
			if e.idp.Stats().RefreshCalls != calls {
				t.Fatal("a broken link was refreshed again")
			}
		})
	}
}

// TestTransientFailureNeverBreaksLink (step 7): 503s from the provider
// yield ErrProviderUnavailable for an expired token, at once and with the
// link's backoff as Retry-After, and the current token for a still-valid
// one; the link stays active with the failure counted and the lease
// released, and the first call after the outage and the backoff refreshes.
func TestTransientFailureNeverBreaksLink(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "sqlite", refreshAhead: 10 * time.Minute,
		idp: fakeidp.Config{Faults: fakeidp.Faults{P503: 1}}})
	c := e.coordinator(0, nil, func(cfg *refresh.Config) {
		cfg.RetryBackoff, cfg.RetryBackoffMax = 30*time.Millisecond, 30*time.Millisecond
	})
	l, tok := e.seed("u1")

	e.clock.Advance(55 * time.Minute) // inside the window, still valid
	got, err := c.Token(context.Background(), providerID, "u1", 0)
	if err != nil || got.AccessToken != tok.AccessToken {
		t.Fatalf("still-valid token during an outage: %v", err)
	}
	cur := e.link("u1")
	// fakeidp answers 503 temporarily_unavailable: the provider says it
	// did not act, so the generation is not suspect.
	if cur.State != tokenbroker.LinkActive || cur.Failures != 1 || cur.LeaseOwner != "" || cur.NextAttemptAt.IsZero() || cur.Suspect != "" {
		t.Fatalf("after a 503 temporarily_unavailable: %+v", cur)
	}

	e.clock.Advance(time.Hour) // expired
	_, err = c.Token(context.Background(), providerID, "u1", 0)
	var pu *tokenbroker.ProviderUnavailableError
	if !errors.As(err, &pu) || pu.RetryAfter < time.Second {
		t.Fatalf("got %v, want ProviderUnavailableError with a retry-after", err)
	}
	cur = e.link("u1")
	if cur.State != tokenbroker.LinkActive || cur.Generation != l.Generation || cur.LeaseOwner != "" {
		t.Fatalf("transient failure changed the link: state %s gen %d lease %q", cur.State, cur.Generation, cur.LeaseOwner)
	}
	e.idp.SetFaults(fakeidp.Faults{})
	waitPast(t, e.stores[0], e.link("u1").NextAttemptAt)
	if _, err := c.Token(context.Background(), providerID, "u1", 0); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
	if cur := e.link("u1"); cur.Failures != 0 || cur.Suspect != "" || cur.Generation != l.Generation+1 {
		t.Fatalf("after the recovery: %+v", cur)
	}
}

// TestNoConnectionHeldAcrossProviderCall (I6): while the lease holder waits
// for the provider, the database serves other work, even with a pool of one
// connection (PostgreSQL) or a single writer (SQLite).
func TestNoConnectionHeldAcrossProviderCall(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := MustEnv(t, envOptions{kind: kind, postgresQuery: "pool_max_conns=1"})
			gate := newGated(e.prov)
			c := e.coordinator(0, gate, nil)
			e.seedExpired("u1")
			done := make(chan error, 1)
			go func() {
				_, err := c.Token(context.Background(), providerID, "u1", 0)
				done <- err
			}()
			recv(t, gate.entered, "the provider call")
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if _, err := e.stores[0].GetLink(ctx, "u1", providerID); err != nil {
				t.Fatalf("read during the provider call: %v", err)
			}
			tok, _ := e.idp.IssueToken("u2")
			if _, err := e.stores[0].PutLink(ctx, &tokenbroker.Link{UserID: "u2", ProviderID: providerID,
				Token: tokenbroker.Token{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, Expiry: tok.Expiry}}, tokenbroker.Record{}); err != nil {
				t.Fatalf("write during the provider call: %v", err)
			}
			close(gate.release)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLostRefreshAfterHolderDied covers I2's first exception: a holder that
// stops between the provider's answer and its commit loses the rotated
// token (in process, "dying" is losing the database: its renewals and its
// commit fail). Another replica takes the expired lease over after the
// grace, sends the old refresh token, the provider rejects it (and revokes
// the family); the loss is counted as holder_died and the link's reason
// says so. When the "dead" holder's database comes back, its commit is
// refused by the fence: the link is not resurrected.
func TestLostRefreshAfterHolderDied(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "postgres", replicas: 2})
	cut := &partitionedStore{replicaStore: e.stores[0]}
	stopped := make(chan struct{})
	dead := e.coordinator(0, afterAnswer{e.prov, func() {
		cut.cut.Store(true)
		close(stopped)
	}}, func(cfg *refresh.Config) {
		cfg.Store = cut
		cfg.LeaseTTL, cfg.Grace, cfg.CommitRetryInterval = time.Second, 200*time.Millisecond, 20*time.Millisecond
	})
	heir := e.coordinator(1, nil, func(cfg *refresh.Config) {
		cfg.LeaseTTL, cfg.Grace, cfg.PollInterval = time.Second, 200*time.Millisecond, 50*time.Millisecond
		cfg.CommitRetryInterval = 20 * time.Millisecond
	})
	e.seedExpired("u1")
	deadDone := make(chan struct{})
	go func() {
		defer close(deadDone)
		_, _ = dead.Token(context.Background(), providerID, "u1", 0)
	}()
	undo := sync.OnceFunc(func() { cut.cut.Store(false); <-deadDone })
	defer undo()
	recv(t, stopped, "the holder to lose its database before its commit")

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, err := heir.Token(ctx, providerID, "u1", 0)
	var re *tokenbroker.ReauthRequiredError
	if !errors.As(err, &re) || re.Code != tokenbroker.ReasonLostRefresh {
		t.Fatalf("got %v, want ReauthRequiredError lost_refresh", err)
	}
	if heir.Stats().LostRefreshes != 1 || heir.Stats().Takeovers != 1 {
		t.Fatalf("heir stats %+v, want one takeover and one lost refresh", heir.Stats())
	}
	cur := e.link("u1")
	if cur.State != tokenbroker.LinkReauthRequired || cur.ReauthReason != tokenbroker.ReasonLostRefresh ||
		!strings.Contains(cur.FailureReason, tokenbroker.LossHolderDied) {
		t.Fatalf("reason %q %q does not name the lost refresh and its cause", cur.ReauthReason, cur.FailureReason)
	}
	if st := e.idp.Stats(); st.ReuseDetections != 1 {
		t.Fatalf("reuse detections = %d, want 1 (the heir re-sent the spent token)", st.ReuseDetections)
	}
	// The holder's database returns: its commit must not win over the
	// mark (no resurrected link holding a revoked token).
	undo()
	if after := e.link("u1"); after.State != tokenbroker.LinkReauthRequired || after.Generation != cur.Generation {
		t.Fatalf("the late holder resurrected the link: %+v", after)
	}
	if dead.Stats().LostCommits != 1 {
		t.Fatalf("the late holder's lost commit is not counted: %+v", dead.Stats())
	}
}

// TestNoLinkAndUnknownProvider: typed not-found errors.
func TestNoLinkAndUnknownProvider(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "sqlite"})
	c := e.coordinator(0, nil, nil)
	if _, err := c.Token(context.Background(), providerID, "nobody", 0); !tokenbroker.IsNotFound(err) {
		t.Fatalf("missing link: %v", err)
	}
	if _, err := c.Token(context.Background(), "nope", "u1", 0); !tokenbroker.IsNotFound(err) {
		t.Fatalf("unknown provider: %v", err)
	}
}
