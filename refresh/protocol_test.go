package refresh_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/provider"
	"github.com/tokenbroker/tokenbroker/refresh"
)

// The tests of this file are the protocol's edges (docs/design.md,
// "Protocol v2"): each names the mechanism it proves, and fails without it.

// TestLeaseRenewedWhileCommitFails is the interleaving that broke v1: the
// holder's commits fail on a database blip for longer than the lease TTL.
// Its heartbeat keeps renewing the lease, so the other replica's callers
// wait instead of taking over and re-sending the spent refresh token; the
// holder commits when the database answers again. One provider call, no
// reuse, every caller gets the holder's token. Without renewal the other
// replica takes over after TTL+grace, sends the rotated refresh token, and
// the family is revoked.
func TestLeaseRenewedWhileCommitFails(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "postgres", replicas: 2})
	fs := &faultyStore{replicaStore: e.stores[0]}
	fs.commitFailures.Store(60) // about 2.5 s of retries at 50 ms at most
	fs.failedDownTo, fs.downTo = make(chan struct{}), 55
	short := func(cfg *refresh.Config) {
		cfg.LeaseTTL, cfg.Grace, cfg.CommitRetryInterval, cfg.PollInterval = time.Second, 200*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	}
	holder := e.coordinator(0, nil, func(cfg *refresh.Config) { short(cfg); cfg.Store = fs })
	other := e.coordinator(1, nil, short)
	e.seedExpired("u1")

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	got := make(chan string, 11)
	askInBackground(ctx, t, holder, "u1", "holder's caller", got)
	// The other replica's callers arrive while the holder's commits fail.
	recv(t, fs.failedDownTo, "the holder's fifth failed commit")
	for range 10 {
		askInBackground(ctx, t, other, "u1", "other replica's caller", got)
	}
	want := ""
	for range 11 {
		tok := <-got
		if want == "" {
			want = tok
		}
		if tok == "" || tok != want {
			t.Fatalf("callers got different tokens or none: %q vs %q", tok, want)
		}
	}
	st := e.idp.Stats()
	if st.RefreshCalls != 1 || st.ReuseDetections != 0 {
		t.Fatalf("provider refresh calls %d, reuse detections %d; want 1 and 0", st.RefreshCalls, st.ReuseDetections)
	}
	if l := e.link("u1"); l.State != tokenbroker.LinkActive || l.Generation != 2 || l.Token.AccessToken != want {
		t.Fatalf("link %+v; want active at generation 2 with the holder's token", l)
	}
	if holder.Stats().CommitRetries < 40 || other.Stats().Takeovers != 0 {
		t.Fatalf("holder %+v, other %+v: want the commit retried past the TTL and no takeover", holder.Stats(), other.Stats())
	}
}

// TestSlowProviderWaitedForWithOneCall: a provider slower than the lease
// TTL (here 3 s against 1 s; 12 s against the default 10 s in production)
// is waited for: the holder renews its lease, the other replicas wait, one
// call is made.
func TestSlowProviderWaitedForWithOneCall(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "postgres", replicas: 3,
		idp: fakeidp.Config{Faults: fakeidp.Faults{Latency: 3 * time.Second}}})
	cs := make([]*refresh.Coordinator, 3)
	for i := range cs {
		cs[i] = e.coordinator(i, nil, func(cfg *refresh.Config) {
			cfg.LeaseTTL, cfg.Grace, cfg.ProviderTimeout, cfg.CommitRetryInterval = time.Second, 200*time.Millisecond, 10*time.Second, 50*time.Millisecond
		})
	}
	e.seedExpired("u1")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var wg sync.WaitGroup
	tokens := make([]string, 30)
	for i := range tokens {
		wg.Go(func() {
			tok, err := cs[i%3].Token(ctx, providerID, "u1", 0)
			if err != nil {
				t.Errorf("caller %d: %v", i, err)
				return
			}
			tokens[i] = tok.AccessToken
		})
	}
	wg.Wait()
	for _, tok := range tokens {
		if tok != tokens[0] {
			t.Fatal("callers got different tokens")
		}
	}
	if st := e.idp.Stats(); st.RefreshCalls != 1 || st.ReuseDetections != 0 {
		t.Fatalf("provider refresh calls %d, reuse %d; want 1 and 0", st.RefreshCalls, st.ReuseDetections)
	}
}

// callLog wraps a provider and records when each refresh call started.
type callLog struct {
	tokenbroker.Provider
	mu    sync.Mutex
	calls []time.Time
}

func (c *callLog) Refresh(ctx context.Context, rt string) (*tokenbroker.Token, error) {
	c.mu.Lock()
	c.calls = append(c.calls, time.Now())
	c.mu.Unlock()
	return c.Provider.Refresh(ctx, rt)
}

func (c *callLog) times() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Time(nil), c.calls...)
}

// TestUncertainAttemptsSpacedAndLossCounted: a provider slower than the
// provider timeout processes each request after the client gave up. The
// first attempt's outcome is uncertain, so the link backs off (on the row,
// for every replica) before the same refresh token goes out again; callers
// on three replicas calling all the time cause at most 3 attempts in the
// first 6 s (the production defaults, 10 s backoff and a 60 s timeout, are
// 10x these). When the provider answers in time again, its rejection of the
// spent token is a lost refresh attributed to answer_lost, not a
// revocation. Without the backoff the replicas re-send the token dozens of
// times.
func TestUncertainAttemptsSpacedAndLossCounted(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "postgres", replicas: 3,
		idp: fakeidp.Config{Faults: fakeidp.Faults{Latency: 400 * time.Millisecond}}})
	calls := &callLog{Provider: e.prov}
	const base = 2 * time.Second
	cs := make([]*refresh.Coordinator, 3)
	for i := range cs {
		cs[i] = e.coordinator(i, calls, func(cfg *refresh.Config) {
			cfg.ProviderTimeout = 150 * time.Millisecond
			cfg.UncertainBackoff, cfg.UncertainBackoffMax = base, time.Minute
			cfg.CircuitThreshold = 1000 // one link: this is about the link's backoff
		})
	}
	e.seedExpired("u1")

	start := time.Now()
	keepAsking(t, 6*time.Second, 9, 20*time.Millisecond, cs, []string{"u1"})
	times := calls.times()
	if n := len(times); n == 0 || n > 3 {
		t.Fatalf("%d provider calls in the first %v, want 1 to 3 (spaced by the link's backoff)", n, time.Since(start).Round(time.Millisecond))
	}
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < base/2 {
			t.Fatalf("attempts %d and %d were %v apart, want at least the backoff's lower bound %v", i, i+1, gap, base/2)
		}
	}
	cur := e.link("u1")
	if cur.State != tokenbroker.LinkActive || cur.Suspect != tokenbroker.LossAnswerLost || cur.Failures != len(times) {
		t.Fatalf("link after uncertain attempts: %+v", cur)
	}

	// The provider answers in time again: the token it rotated on the
	// first (unanswered) request is spent.
	e.idp.SetFaults(fakeidp.Faults{})
	waitPast(t, e.stores[0], cur.NextAttemptAt)
	_, err := cs[1].Token(context.Background(), providerID, "u1", 0)
	var re *tokenbroker.ReauthRequiredError
	if !errors.As(err, &re) || re.Code != tokenbroker.ReasonLostRefresh || !strings.Contains(re.Reason, tokenbroker.LossAnswerLost) {
		t.Fatalf("after the provider recovered: %v, want reauth_required lost_refresh (answer_lost)", err)
	}
	var lost int64
	for _, c := range cs {
		lost += c.Stats().LostRefreshes
	}
	if lost != 1 {
		t.Fatalf("lost refreshes counted = %d, want 1", lost)
	}
	evs, err := e.stores[0].ListAudit(context.Background(), tokenbroker.AuditFilter{Action: tokenbroker.AuditLostRefresh})
	if err != nil || len(evs) != 1 || evs[0].Outcome != tokenbroker.LossAnswerLost {
		t.Fatalf("lost-refresh audit events %+v, %v; want one answer_lost", evs, err)
	}
}

// TestMinValidBeyondLifetimeCostsNothing: min_valid as long as the
// provider's tokens live is refused before anything is sent, however often
// it is asked (v1 refreshed, committed, then refused, each time).
func TestMinValidBeyondLifetimeCostsNothing(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "sqlite"})
	c := e.coordinator(0, nil, nil)
	e.seed("u1") // tokens live 1 h
	for _, advance := range []time.Duration{0, 30 * time.Minute, 2 * time.Hour} {
		e.clock.Advance(advance)
		for range 5 {
			_, err := c.Token(context.Background(), providerID, "u1", 2*time.Hour)
			if tokenbroker.ErrorCode(err) != tokenbroker.EINVALID || !strings.Contains(tokenbroker.ErrorMessage(err), "1h0m0s") {
				t.Fatalf("min_valid 2h on 1 h tokens: %v, want invalid_request naming the lifetime", err)
			}
		}
	}
	if n := e.idp.Stats().RefreshCalls; n != 0 {
		t.Fatalf("provider refresh calls = %d, want 0", n)
	}
}

// TestShortLivedTokensRefreshedOncePerGeneration: with the default 5 m
// refresh-ahead window and tokens that live 8 s, a call every 400 ms for
// 16 s refreshes each generation once, at half its life (v1 refreshed on
// every call: the window was longer than the lifetime).
func TestShortLivedTokensRefreshedOncePerGeneration(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "sqlite", refreshAhead: 5 * time.Minute,
		idp: fakeidp.Config{AccessTokenTTL: 8 * time.Second}})
	c := e.coordinator(0, nil, nil)
	e.seed("u1")
	for range 40 {
		if _, err := c.Token(context.Background(), providerID, "u1", 0); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(400 * time.Millisecond)
	}
	if n := e.idp.Stats().RefreshCalls; n < 3 || n > 4 {
		t.Fatalf("provider refresh calls = %d over 16 s of 8 s tokens, want 3 or 4 (one per generation)", n)
	}
}

// TestWrongClientSecretLeavesLinksActive: a provider that refuses this
// service's client (a wrong or rotated secret: invalid_client) is marked
// misconfigured for every replica; no link is marked, callers get 503
// provider_misconfigured at once (one probe per interval reaches the
// provider), and the first success after the fix clears it.
func TestWrongClientSecretLeavesLinksActive(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "postgres", replicas: 2})
	wrong := &callLog{Provider: mustProviderWith(t, e, func(pc *provider.ProviderConfig) { pc.ClientSecret = "rotated-by-mistake" })}
	const probe = 300 * time.Millisecond
	mod := func(cfg *refresh.Config) { cfg.MisconfiguredProbe = probe }
	bad := []*refresh.Coordinator{e.coordinator(0, wrong, mod), e.coordinator(1, wrong, mod)}
	users := []string{"u1", "u2", "u3"}
	for _, u := range users {
		e.seed(u)
	}
	e.clock.Advance(2 * time.Hour)
	for round := range 3 {
		for i, u := range users {
			_, err := bad[(round+i)%2].Token(context.Background(), providerID, u, 0)
			var me *tokenbroker.ProviderMisconfiguredError
			if !errors.As(err, &me) || tokenbroker.ErrorCode(err) != tokenbroker.EPROVIDERMISCONFIGURED || me.RetryAfter < time.Second {
				t.Fatalf("round %d %s: %v, want provider_misconfigured with a retry-after", round, u, err)
			}
		}
	}
	if n := len(wrong.times()); n != 1 {
		t.Fatalf("provider refresh calls = %d, want 1 (the others wait for the probe interval)", n)
	}
	for _, u := range users {
		if l := e.link(u); l.State != tokenbroker.LinkActive || l.Failures != 0 || l.Generation != 1 {
			t.Fatalf("link %s after the client was refused: %+v", u, l)
		}
	}
	h, err := e.stores[0].GetProviderHealth(context.Background(), providerID)
	if err != nil || !strings.Contains(h.Misconfigured, "invalid_client") {
		t.Fatalf("provider health %+v, %v; want misconfigured", h, err)
	}
	// The operator fixes the secret (a restart with the right one); the
	// next probe succeeds and clears it for everybody.
	good := e.coordinator(0, nil, mod)
	waitPast(t, e.stores[0], h.OpenUntil)
	for _, u := range users {
		if _, err := good.Token(context.Background(), providerID, u, 0); err != nil {
			t.Fatalf("%s after the fix: %v", u, err)
		}
	}
	if h, _ := e.stores[0].GetProviderHealth(context.Background(), providerID); h.Troubled() {
		t.Fatalf("provider health after a success: %+v", h)
	}
}

// mustProviderWith is MustProvider with changes to its configuration.
func mustProviderWith(tb testing.TB, e *env, mod func(*provider.ProviderConfig)) tokenbroker.Provider {
	tb.Helper()
	ep := e.idp.Endpoints()
	pc := provider.ProviderConfig{
		ID: providerID, Kind: "oauth2",
		ClientID: fakeidp.DefaultClientID, ClientSecret: fakeidp.DefaultClientSecret,
		AuthURL: ep.Authorize, TokenURL: ep.Token, ValidateURL: ep.Userinfo, RevokeURL: ep.Revoke,
	}
	mod(&pc)
	p, err := provider.New(context.Background(), pc, provider.Options{Now: e.clock.Now})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// failFirst wraps a provider: its first n refresh calls fail as "not
// processed" without reaching the provider (a refused connection).
type failFirst struct {
	tokenbroker.Provider
	n atomic.Int64
}

func (f *failFirst) Refresh(ctx context.Context, rt string) (*tokenbroker.Token, error) {
	if f.n.Add(-1) >= 0 {
		return nil, &tokenbroker.ProviderError{ProviderID: f.ID(), Class: tokenbroker.FailureNotProcessed, Err: errors.New("dial tcp: connection refused")}
	}
	return f.Provider.Refresh(ctx, rt)
}

// TestLossAttributedWhoeverSeesIt: a holder "dies" (loses its database)
// between the provider's answer and its commit. The loss is counted and
// attributed to holder_died however the rejection is later met: by
// another replica; by a replica restarted under the dead one's id; by a
// takeover whose first attempt fails transiently and releases the lease
// (v1 then called the rejection a revocation). The attribution is on the
// row (the attempt accounting), not in any replica's memory.
func TestLossAttributedWhoeverSeesIt(t *testing.T) {
	for _, tc := range []struct {
		name      string
		heirOwner string
		failFirst int64
	}{
		{"another replica", "replica-b", 0},
		{"restart under the same replica id", "replica-a", 0},
		{"takeover then a transient failure", "replica-b", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := MustEnv(t, envOptions{kind: "postgres", replicas: 2})
			cut := &partitionedStore{replicaStore: e.stores[0]}
			stopped := make(chan struct{})
			short := func(cfg *refresh.Config) {
				cfg.LeaseTTL, cfg.Grace, cfg.PollInterval, cfg.CommitRetryInterval = time.Second, 200*time.Millisecond, 50*time.Millisecond, 20*time.Millisecond
				cfg.RetryBackoff, cfg.RetryBackoffMax = 50*time.Millisecond, 50*time.Millisecond
			}
			dead := e.coordinator(0, afterAnswer{e.prov, func() {
				cut.cut.Store(true)
				close(stopped)
			}}, func(cfg *refresh.Config) {
				short(cfg)
				cfg.Store = cut
			})
			flaky := &failFirst{Provider: e.prov}
			flaky.n.Store(tc.failFirst)
			heir := e.coordinator(1, flaky, func(cfg *refresh.Config) { short(cfg); cfg.Owner = tc.heirOwner })
			e.seedExpired("u1")
			deadDone := make(chan struct{})
			go func() {
				defer close(deadDone)
				_, _ = dead.Token(context.Background(), providerID, "u1", 0)
			}()
			defer func() { cut.cut.Store(false); <-deadDone }()
			recv(t, stopped, "the holder to lose its database before its commit")

			var err error
			for attempt := 0; attempt < 50; attempt++ {
				_, err = heir.Token(context.Background(), providerID, "u1", 0)
				if !errors.Is(err, tokenbroker.ErrProviderUnavailable) {
					break
				}
				waitPast(t, e.stores[1], e.link("u1").NextAttemptAt)
			}
			var re *tokenbroker.ReauthRequiredError
			if !errors.As(err, &re) || re.Code != tokenbroker.ReasonLostRefresh || !strings.Contains(re.Reason, tokenbroker.LossHolderDied) {
				t.Fatalf("got %v, want reauth_required lost_refresh (holder_died)", err)
			}
			if heir.Stats().LostRefreshes != 1 {
				t.Fatalf("heir's lost refreshes = %d, want 1", heir.Stats().LostRefreshes)
			}
		})
	}
}

// TestOutageCostsFewCallsPerLink: a provider outage (instant 503s) over 5
// links, with callers on 3 replicas asking all the time, costs each link a
// handful of provider calls (the link's backoff on the row, then the
// provider's circuit), not thousands; it logs one warning per link (its
// transition to failing) and one audit event per link, not per attempt;
// no link breaks and every link refreshes once the provider is back. The
// outage lasts 2 s with backoffs a tenth of the defaults (20 s with the
// defaults in the multi-process test).
func TestOutageCostsFewCallsPerLink(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "postgres", replicas: 3,
		idp: fakeidp.Config{Faults: fakeidp.Faults{P503: 1}}})
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedBuffer{mu: &logMu, b: &logs}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cs := make([]*refresh.Coordinator, 3)
	for i := range cs {
		cs[i] = e.coordinator(i, nil, func(cfg *refresh.Config) {
			cfg.Logger = log
			cfg.RetryBackoff, cfg.RetryBackoffMax = 100*time.Millisecond, 6*time.Second
			cfg.CircuitOpenFor, cfg.CircuitOpenForMax = 500*time.Millisecond, 30*time.Second
		})
	}
	users := []string{"u1", "u2", "u3", "u4", "u5"}
	families := map[string]string{}
	for _, u := range users {
		_, tok := e.seed(u)
		families[u] = tok.Family
	}
	e.clock.Advance(2 * time.Hour)

	keepAsking(t, 2*time.Second, 15, 10*time.Millisecond, cs, users)
	st := e.idp.Stats()
	for _, u := range users {
		if n := st.Families[families[u]].RefreshCalls; n > 10 {
			t.Errorf("link %s: %d provider calls during the outage, want at most 10", u, n)
		}
	}
	during := st.RefreshCalls
	e.idp.SetFaults(fakeidp.Faults{})
	// After the outage every link refreshes (its backoff or the circuit's
	// probe first); none is broken.
	deadline := time.Now().Add(waitTimeout)
	for _, u := range users {
		for {
			_, err := cs[0].Token(context.Background(), providerID, u, 0)
			if err == nil {
				break
			}
			if !errors.Is(err, tokenbroker.ErrProviderUnavailable) || time.Now().After(deadline) {
				t.Fatalf("%s after the outage: %v", u, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if l := e.link(u); l.State != tokenbroker.LinkActive || l.Failures != 0 {
			t.Fatalf("%s after the recovery: %+v", u, l)
		}
	}
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	if n := strings.Count(out, "provider refresh failed; the link backs off"); n != len(users) {
		t.Errorf("%d warnings of failed refreshes, want one per link (%d)\n%s", n, len(users), out)
	}
	evs, err := e.stores[0].ListAudit(context.Background(), tokenbroker.AuditFilter{Action: tokenbroker.AuditRefreshFailed})
	if err != nil || len(evs) != len(users) {
		t.Errorf("%d refresh_failed audit events, %v; want one per link", len(evs), err)
	}
	t.Logf("provider calls during a 2 s outage over %d links on 3 replicas: %d", len(users), during)
}

type lockedBuffer struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// TestBackoffAnswersAtOnce: while a link backs off, a caller whose token
// expired gets 503 with the real Retry-After at once, without a provider
// call; a caller whose token is still valid gets it.
func TestBackoffAnswersAtOnce(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "sqlite", refreshAhead: 10 * time.Minute,
		idp: fakeidp.Config{Faults: fakeidp.Faults{P503: 1, RetryAfter: 90 * time.Second}}})
	c := e.coordinator(0, nil, nil)
	_, tok := e.seed("u1")
	e.clock.Advance(55 * time.Minute) // inside the window: the refresh fails, the token is served
	if got, err := c.Token(context.Background(), providerID, "u1", 0); err != nil || got.AccessToken != tok.AccessToken {
		t.Fatalf("still-valid token: %v", err)
	}
	calls := e.idp.Stats().RefreshCalls
	e.clock.Advance(10 * time.Minute) // expired
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err := c.Token(ctx, providerID, "u1", 0)
		cancel()
		var pu *tokenbroker.ProviderUnavailableError
		if !errors.As(err, &pu) || pu.RetryAfter < 60*time.Second {
			t.Fatalf("during the backoff: %v, want provider_unavailable with the provider's Retry-After", err)
		}
	}
	if n := e.idp.Stats().RefreshCalls; n != calls {
		t.Fatalf("%d provider calls during the backoff, want none", n-calls)
	}
}

// TestOneFlightPerLinkWhateverMinValid: callers of one replica with
// different min_valid share the link's one flight (v1 keyed flights by
// min_valid, so one replica ran two for one link), and the provider is
// called once.
func TestOneFlightPerLinkWhateverMinValid(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "sqlite"})
	gate := newGated(e.prov)
	c := e.coordinator(0, gate, nil)
	e.seedExpired("u1")
	var wg sync.WaitGroup
	for i, mv := range []time.Duration{0, time.Minute, 10 * time.Minute, 30 * time.Minute} {
		wg.Go(func() {
			if _, err := c.Token(context.Background(), providerID, "u1", mv); err != nil {
				t.Errorf("caller %d (min_valid %s): %v", i, mv, err)
			}
		})
	}
	recv(t, gate.entered, "the provider call")
	close(gate.release)
	wg.Wait()
	if n := gate.calls.Load(); n != 1 {
		t.Fatalf("provider calls = %d, want 1", n)
	}
	if w := c.Stats().Waits; w != 0 {
		t.Fatalf("the replica waited %d times for its own lease: more than one flight ran for the link", w)
	}
}

// TestCloseWaitsForFlights: Close returns only after a flight under way has
// committed the provider's answer (I2), and refuses new flights after.
func TestCloseWaitsForFlights(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "sqlite"})
	gate := newGated(e.prov)
	c, err := refresh.New(refresh.Config{Store: e.stores[0], Signaler: e.stores[0], Providers: providers{gate}, Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := e.seedExpired("u1")
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _, _ = c.Token(ctx, providerID, "u1", 0) }()
	recv(t, gate.entered, "the provider call")
	cancel() // the caller leaves; the flight goes on
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a flight was under way")
	case <-time.After(50 * time.Millisecond):
	}
	close(gate.release)
	recv(t, closed, "Close to return")
	if got := e.link("u1"); got.Generation != l.Generation+1 {
		t.Fatalf("the flight's answer was not committed before Close returned: generation %d", got.Generation)
	}
	_, err = c.Token(context.Background(), providerID, "u1", 0)
	if err != nil && tokenbroker.ErrorCode(err) != tokenbroker.ESTOREUNAVAILABLE {
		t.Fatalf("after Close: %v", err)
	}
}

// noScope wraps a provider whose refresh answers carry no scope.
type noScope struct{ tokenbroker.Provider }

func (n noScope) Refresh(ctx context.Context, rt string) (*tokenbroker.Token, error) {
	tok, err := n.Provider.Refresh(ctx, rt)
	if tok != nil {
		tok.Scopes = nil
	}
	return tok, err
}

// TestRefreshWithoutScopeKeepsTheGrantsScopes: RFC 6749 §5.1, an answer
// without scope grants what was asked; a refresh asks for the grant's
// scopes, so the link keeps them (v1 stored an empty list).
func TestRefreshWithoutScopeKeepsTheGrantsScopes(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "sqlite"})
	c := e.coordinator(0, noScope{e.prov}, nil)
	tok, err := e.idp.IssueToken("u1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.stores[0].PutLink(context.Background(), &tokenbroker.Link{UserID: "u1", ProviderID: providerID,
		Token: tokenbroker.Token{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, Expiry: tok.Expiry,
			IssuedAt: e.clock.Now(), Scopes: []string{"repo", "read:user"}}}, tokenbroker.Record{}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Hour)
	got, err := c.Token(context.Background(), providerID, "u1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if l := e.link("u1"); l.Generation != 2 || strings.Join(l.Token.Scopes, " ") != "repo read:user" || strings.Join(got.Scopes, " ") != "repo read:user" {
		t.Fatalf("after a refresh without scope: link scopes %v, caller's %v; want the grant's", l.Token.Scopes, got.Scopes)
	}
}
