package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/client"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/await"
	"github.com/tokenbroker/tokenbroker/internal/bench"
	"github.com/tokenbroker/tokenbroker/internal/pgcluster"
	"github.com/tokenbroker/tokenbroker/internal/pgtest"
	"github.com/tokenbroker/tokenbroker/store/postgres"
)

// The chaos suite: faults done from outside to real `tokenbroker serve`
// replicas (SIGKILL, SIGTERM), to a throwaway PostgreSQL cluster (shut
// down and started again) and to fakeidp (outages, 5xx, latency), while
// callers keep asking. Each test logs its figures: requests served, errors
// by kind, provider calls, losses and their attribution
// (`go test -run Chaos -v ./cmd/tokenbroker`). The deterministic
// simulation (refresh/sim) explores the same faults exhaustively; these
// tests prove them on the real processes.

// seed imports a link for each user whose access token expires at expiry,
// and returns their token families at the provider.
func (rs *replicaSet) seed(t *testing.T, expiry time.Time, users ...string) map[string]string {
	t.Helper()
	families := map[string]string{}
	for _, u := range users {
		tok, err := rs.idp.IssueToken(u)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rs.client(0).ImportLink(context.Background(), u, "bench",
			client.ImportRequest{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: "Bearer", Expiry: &expiry}); err != nil {
			t.Fatal(err)
		}
		families[u] = tok.Family
	}
	return families
}

// tally counts callers' answers by kind: ok, an API error code, deadline
// (the caller's own timeout) or transport (no answer: a killed replica).
type tally struct {
	mu    sync.Mutex
	codes map[string]int
}

func newTally() *tally { return &tally{codes: map[string]int{}} }

// add counts err's kind and returns it; ce is the API error, if any.
func (t *tally) add(err error) (kind string, ce *client.Error) {
	switch {
	case err == nil:
		kind = "ok"
	case errors.As(err, &ce):
		kind = ce.Code
	case errors.Is(err, context.DeadlineExceeded):
		kind = "deadline"
	default:
		kind = "transport"
	}
	t.mu.Lock()
	t.codes[kind]++
	t.mu.Unlock()
	return kind, ce
}

func (t *tally) get(kind string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.codes[kind]
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	total := 0
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(t.codes)) {
		total += t.codes[k]
		parts = append(parts, fmt.Sprintf("%s %d", k, t.codes[k]))
	}
	return fmt.Sprintf("%d requests (%s)", total, strings.Join(parts, ", "))
}

// tokenWorks reports whether the provider accepts the access token (its
// userinfo endpoint, which the faults do not target).
func tokenWorks(t *testing.T, idp *fakeidp.Server, access string) bool {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, idp.Endpoints().Userinfo, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// settle asks for user's token, following Retry-After, until it gets a
// definite answer: a token, or reauth_required.
func (rs *replicaSet) settle(t *testing.T, user string, within time.Duration) (*client.Token, *client.Error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		tok, err := rs.client(i%len(rs.clients)).Token(ctx, user, "bench", 0)
		cancel()
		var ce *client.Error
		switch {
		case err == nil:
			return tok, nil
		case errors.As(err, &ce) && ce.Code == tokenbroker.EREAUTHREQUIRED:
			return nil, ce
		case time.Now().After(deadline):
			t.Fatalf("%s: no definite answer within %s: %v", user, within, err)
		}
		wait := time.Second
		if ce != nil && ce.RetryAfter > 0 {
			wait = ce.RetryAfter // the server says when; there is no event to wait for
		}
		time.Sleep(min(wait, time.Until(deadline)+time.Millisecond))
	}
}

// checkEnds settles every link and checks how it ends: active with a token
// the provider accepts, or reauth_required as a lost refresh that names
// its cause, with the provider having revoked the grant because a spent
// refresh token came back, and the loss audited. It returns the losses by
// cause.
func (rs *replicaSet) checkEnds(t *testing.T, families map[string]string, within time.Duration) map[string]int {
	t.Helper()
	losses := map[string]int{}
	for _, u := range slices.Sorted(maps.Keys(families)) {
		tok, _ := rs.settle(t, u, within)
		fam := rs.idp.Stats().Families[families[u]]
		if tok != nil {
			if !tokenWorks(t, rs.idp, tok.AccessToken) || fam.Revoked {
				t.Errorf("%s ended active with a token the provider does not accept (grant %+v)", u, fam)
			}
			continue
		}
		l, err := rs.client(0).Link(context.Background(), u, "bench")
		if err != nil {
			t.Fatal(err)
		}
		cause := ""
		for _, c := range []string{tokenbroker.LossHolderDied, tokenbroker.LossAnswerLost} {
			if strings.Contains(l.FailureReason, "("+c+")") {
				cause = c
			}
		}
		if l.ReauthReason != string(tokenbroker.ReasonLostRefresh) || cause == "" || !fam.Revoked || fam.RevokedReason != "reuse" {
			t.Errorf("%s ended %s (%s: %s) with the grant %+v: want only lost refreshes, attributed, of grants revoked for reuse",
				u, l.State, l.ReauthReason, l.FailureReason, fam)
			continue
		}
		page, err := rs.client(0).Audit(context.Background(), client.AuditQuery{UserID: u, Action: tokenbroker.AuditLostRefresh})
		if err != nil || len(page.Events) == 0 {
			t.Errorf("%s: lost refresh not audited (%v)", u, err)
		}
		losses[cause]++
	}
	revoked := 0
	st := rs.idp.Stats()
	for _, f := range families {
		if st.Families[f].Revoked {
			revoked++
		}
	}
	n := 0
	for _, c := range losses {
		n += c
	}
	if revoked != n {
		t.Errorf("%d grants revoked at the provider, %d lost refreshes attributed", revoked, n)
	}
	return losses
}

// TestChaosPostgresRestartUnderHerd: PostgreSQL shuts down, for longer
// than the lease TTL plus its grace, while three refreshes are in flight
// and callers keep asking every replica for every link. While it is down,
// callers get fast, typed 503s (store_unavailable with Retry-After; none
// runs into its own 5 s timeout). When it returns, the replicas recover by
// themselves: their LISTEN connections come back, and the holders, which
// kept the provider's answers in memory and retried their commits, commit
// before any other replica can take their expired leases over (the grace
// counts from the first look after the return): one provider call per
// link, no reuse, every link active on its next generation - nothing
// lost, nothing resurrected.
func TestChaosPostgresRestartUnderHerd(t *testing.T) {
	multiProcess(t)
	cluster, err := pgcluster.StartCluster(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.Stop() })
	dbURL, err := cluster.CreateDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	arrived := make(chan struct{}, 16)
	idpCfg := fakeidp.Config{Faults: fakeidp.Faults{Latency: 1500 * time.Millisecond},
		OnRequest: func(endpoint string) {
			if endpoint == "token" {
				arrived <- struct{}{}
			}
		}}
	rs := startReplicaSet(t, 3, idpCfg, dbURL, nil, "--lease-ttl", "3s")
	users := []string{"p1", "p2", "p3"}
	families := rs.seed(t, time.Now().Add(-time.Minute), users...)
	listeners := func() int {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1`,
			postgres.ListenerApplicationName).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitListeners := func(what string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for listeners() < len(rs.replicas) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d of %d replicas listen", what, listeners(), len(rs.replicas))
			}
			time.Sleep(50 * time.Millisecond) // a session appears; there is no event for it
		}
	}
	waitListeners("before the outage")

	type answer struct {
		user string
		tok  string
		code string
	}
	answers := make(chan answer, 9)
	for i, u := range users {
		for ri := range rs.clients {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				tok, err := rs.client((i+ri)%3).Token(ctx, u, "bench", 0)
				a := answer{user: u}
				var ce *client.Error
				switch {
				case err == nil:
					a.tok = tok.AccessToken
				case errors.As(err, &ce):
					a.code = ce.Code
				default:
					a.code = "transport: " + err.Error()
				}
				answers <- a
			}()
		}
	}
	for range users {
		await.Signal(t, "a refresh to reach the provider", arrived)
	}
	// The three holders are waiting for the provider: the database goes.
	cluster.Halt()
	down := newTally()
	var downFor time.Duration
	// Callers keep asking every replica for every link throughout, so
	// would-be successors are there the moment the database returns.
	hammer, stopHammer := context.WithCancel(context.Background())
	var hammering sync.WaitGroup
	var mu sync.Mutex
	up := false
	for _, u := range users {
		for ri := range rs.clients {
			hammering.Go(func() {
				for hammer.Err() == nil {
					ctx, cancel := context.WithTimeout(hammer, 5*time.Second)
					start := time.Now()
					_, err := rs.client(ri).Token(ctx, u, "bench", 0)
					took := time.Since(start)
					cancel()
					mu.Lock()
					if !up && hammer.Err() == nil {
						down.add(err)
						downFor = max(downFor, took)
					}
					mu.Unlock()
					select {
					case <-hammer.Done():
					case <-time.After(50 * time.Millisecond):
					}
				}
			})
		}
	}
	time.Sleep(6 * time.Second) // an outage longer than the lease TTL (3 s) and its grace (1 s)
	mu.Lock()
	up = true
	mu.Unlock()
	if err := cluster.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // the callers go on past the leases' grace
	stopHammer()
	hammering.Wait()
	t.Logf("while PostgreSQL was down: %s, the slowest answered in %s", down, downFor.Round(time.Millisecond))
	if down.get(tokenbroker.ESTOREUNAVAILABLE) == 0 {
		t.Errorf("no caller got store_unavailable while the database was down")
	}
	for kind, n := range down.codes {
		if kind != tokenbroker.ESTOREUNAVAILABLE {
			t.Errorf("%d callers got %s while the database was down, want store_unavailable (a fast, typed 503)", n, kind)
		}
	}
	// LISTEN comes back on every replica by itself.
	waitListeners("after the outage")
	for _, r := range rs.replicas {
		if !strings.Contains(r.Logs(), "postgres: listener connection lost; reconnecting") {
			t.Errorf("%s did not log its listener's reconnection", r.Name)
		}
	}

	got := map[string]string{}
	for range 9 {
		a := <-answers
		switch {
		case a.tok != "":
			if prev, ok := got[a.user]; ok && prev != a.tok {
				t.Errorf("%s: callers got two different tokens", a.user)
			}
			got[a.user] = a.tok
		case a.code != tokenbroker.ESTOREUNAVAILABLE:
			t.Errorf("%s: a caller got %q, want a token or store_unavailable", a.user, a.code)
		}
	}
	for _, u := range users {
		var tok *client.Token
		for ri := range rs.clients {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			tok, err = rs.client(ri).Token(ctx, u, "bench", 0)
			cancel()
			if err != nil {
				t.Fatalf("%s on r%d after the database returned: %v", u, ri, err)
			}
		}
		if prev, ok := got[u]; ok && prev != tok.AccessToken {
			t.Errorf("%s: the token after the outage differs from the one the holder's callers got", u)
		}
		l, err := rs.client(2).Link(context.Background(), u, "bench")
		if err != nil || l.State != string(tokenbroker.LinkActive) || l.Generation != 2 {
			t.Errorf("%s after the outage: %+v, %v; want active at generation 2", u, l, err)
		}
	}
	st := rs.idp.Stats()
	for _, u := range users {
		if fam := st.Families[families[u]]; fam.RefreshCalls != 1 || fam.Revoked {
			t.Errorf("%s at the provider: %+v; want one refresh call, not revoked", u, fam)
		}
	}
	if st.ReuseDetections != 0 {
		t.Errorf("reuse detections = %d, want 0", st.ReuseDetections)
	}
	t.Logf("PostgreSQL restart: %d provider refresh calls for %d links, %d reuse detections, 0 losses", st.RefreshCalls, len(users), st.ReuseDetections)
}

// TestChaosKillReplicas: for 60 s, a replica chosen at random is SIGKILLed
// every 2 s and started again under its name, while callers ask every
// replica for 5 links all the time; the provider answers 20% of refreshes
// with a 500 or 502 and its latency jitters. When the killing stops, every
// link ends active with a token the provider accepts, except lost
// refreshes - a replica killed between the provider's answer and its
// commit (holder_died) - each counted against a grant the provider
// revoked, attributed to its cause and audited.
func TestChaosKillReplicas(t *testing.T) {
	multiProcess(t)
	idpCfg := fakeidp.Config{AccessTokenTTL: 3 * time.Second,
		Faults: fakeidp.Faults{P500: 0.1, P502: 0.1, Latency: 20 * time.Millisecond, Jitter: 200 * time.Millisecond}}
	// With the background refresher on, as serve runs by default: it
	// refreshes alongside the callers.
	rs := startReplicaSet(t, 3, idpCfg, pgtest.NewDatabase(t), nil, "--lease-ttl", "2s",
		"--background-refresh=true", "--background-refresh-interval", "500ms")
	users := []string{"k1", "k2", "k3", "k4", "k5"}
	families := rs.seed(t, time.Now().Add(-time.Minute), users...)

	calls := newTally()
	ctx, stopCallers := context.WithCancel(context.Background())
	var callers sync.WaitGroup
	for _, u := range users {
		for range 2 {
			callers.Go(func() {
				for ctx.Err() == nil {
					rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
					_, err := rs.client(rand.IntN(len(rs.clients))).Token(rctx, u, "bench", 0)
					cancel()
					if ctx.Err() == nil {
						calls.add(err)
					}
					select {
					case <-ctx.Done():
					case <-time.After(time.Duration(50+rand.IntN(100)) * time.Millisecond):
					}
				}
			})
		}
	}
	kills := 0
	for end := time.Now().Add(60 * time.Second); time.Now().Before(end); {
		time.Sleep(2 * time.Second)
		i := rand.IntN(len(rs.clients))
		rs.mu.Lock()
		r := rs.replicas[i]
		rs.mu.Unlock()
		r.Kill()
		kills++
		rs.start(t, i)
	}
	stopCallers()
	callers.Wait()
	idp := rs.idp.Stats()
	rs.idp.SetFaults(fakeidp.Faults{})
	losses := rs.checkEnds(t, families, time.Minute)
	t.Logf("60 s, %d replicas SIGKILLed: callers %s; provider: %d refresh calls, %d rotations, %d faults %v, %d reuse detections; losses %v",
		kills, calls, idp.RefreshCalls, idp.Rotations, idp.Faults["500"]+idp.Faults["502"], idp.Faults, idp.ReuseDetections, losses)
	if calls.get("ok") == 0 {
		t.Errorf("no caller got a token")
	}
	for kind, n := range calls.codes {
		switch kind {
		case "ok", tokenbroker.EPROVIDERUNAVAILABLE, tokenbroker.ESTOREUNAVAILABLE, "transport", "deadline", tokenbroker.EREAUTHREQUIRED:
		default:
			t.Errorf("%d callers got %q", n, kind)
		}
	}
}

// TestChaosKillHolder: the replica holding the lease is SIGKILLed while its
// provider call is in flight. With the default 10 s lease (renewed) and 1 s
// grace, every caller of the surviving replicas gets a definite answer
// within 12 s. The provider processed the dead holder's request, so its
// rotated refresh token died with it: the survivors' refresh is a counted
// lost refresh (holder_died), and they answer reauth_required.
func TestChaosKillHolder(t *testing.T) {
	multiProcess(t)
	res := runHerd(t, 2*time.Minute, bench.HerdOptions{
		Replicas: 3, Callers: 30, Rounds: 1, Links: 1,
		ProviderLatency: 200 * time.Millisecond, TokenTTL: 2 * time.Second,
		Strategy: bench.StrategyCoordinated, Store: "postgres", KillHolder: true,
	})
	t.Logf("kill-holder herd: killed %s, takeover wait %.0f ms, lost refreshes %.0f, error codes %v",
		res.KilledReplica, res.TakeoverWaitMS, res.LostRefreshes, res.ErrorCodes)
	if res.KilledReplica == "" || res.KilledCallers != 30 || res.CallerRequests != 60 {
		t.Fatalf("killed %q with %d callers, %d survivors' requests; want one replica of 30 killed, 60 answered", res.KilledReplica, res.KilledCallers, res.CallerRequests)
	}
	for code, n := range res.ErrorCodes {
		if code != tokenbroker.EREAUTHREQUIRED {
			t.Fatalf("%d survivors' callers got %q, want a token or reauth_required (a definite answer)", n, code)
		}
	}
	if res.TakeoverWaitMS <= 0 || res.TakeoverWaitMS > 12000 {
		t.Fatalf("takeover wait %.0f ms, want at most 12 s", res.TakeoverWaitMS)
	}
	if res.LostRefreshes != 1 || res.ProviderRefreshCalls != 2 {
		t.Fatalf("lost refreshes %.0f (want 1), provider calls %d (want 2: the dead holder's and the heir's)", res.LostRefreshes, res.ProviderRefreshCalls)
	}
}

// TestChaosProviderOutage: a 20 s provider outage (instant 503s without
// Retry-After, the worst a provider does) under callers on 3 replicas
// asking every 100 ms for 7 links: the 2 whose tokens are valid keep being
// served; the 5 expired ones get 503 provider_unavailable with
// Retry-After, at a cost of at most 10 provider calls each (the link's
// backoff on the row, the provider's circuit), and no link breaks.
func TestChaosProviderOutage(t *testing.T) {
	multiProcess(t)
	rs := startReplicaSet(t, 3, fakeidp.Config{}, pgtest.NewDatabase(t), nil)
	expired := []string{"o1", "o2", "o3", "o4", "o5"}
	valid := []string{"v1", "v2"}
	families := rs.seed(t, time.Now().Add(-time.Minute), expired...)
	rs.seed(t, time.Now().Add(time.Hour), valid...)
	rs.idp.SetFaults(fakeidp.Faults{P503: 1})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	outage, servedValid := newTally(), newTally()
	var wg sync.WaitGroup
	for ri := range rs.clients {
		for _, u := range append(slices.Clone(expired), valid...) {
			wg.Go(func() {
				for ctx.Err() == nil {
					_, err := rs.client(ri).Token(ctx, u, "bench", 0)
					if ctx.Err() != nil {
						return
					}
					if slices.Contains(valid, u) {
						servedValid.add(err)
					} else if _, ce := outage.add(err); ce != nil && ce.Code == tokenbroker.EPROVIDERUNAVAILABLE && ce.RetryAfter <= 0 {
						t.Errorf("%s: provider_unavailable without Retry-After", u)
					}
					select {
					case <-ctx.Done():
					case <-time.After(100 * time.Millisecond):
					}
				}
			})
		}
	}
	wg.Wait()
	st := rs.idp.Stats()
	perLink := map[string]int{}
	for _, u := range expired {
		perLink[u] = st.Families[families[u]].RefreshCalls
	}
	t.Logf("20 s outage: %d provider calls for %d expired links %v; expired links' callers %s; valid links' callers %s",
		st.RefreshCalls, len(expired), perLink, outage, servedValid)
	for u, n := range perLink {
		if n > 10 {
			t.Errorf("link %s: %d provider calls during the outage, want at most 10", u, n)
		}
	}
	for code, n := range outage.codes {
		if code != tokenbroker.EPROVIDERUNAVAILABLE {
			t.Errorf("expired links' callers got %q (%d times), want only provider_unavailable", code, n)
		}
	}
	for code, n := range servedValid.codes {
		if code != "ok" {
			t.Errorf("valid links' callers got %q (%d times), want their tokens", code, n)
		}
	}
	for _, u := range append(slices.Clone(expired), valid...) {
		l, err := rs.client(1).Link(context.Background(), u, "bench")
		if err != nil || l.State == string(tokenbroker.LinkReauthRequired) {
			t.Errorf("link %s after the outage: %+v, %v", u, l, err)
		}
	}
}

// TestChaosSIGTERMDuringRefresh: a replica gets SIGTERM while its refresh
// is at the provider (slow: 2 s), after the caller that started it gave
// up. It finishes the refresh and commits it before it exits: the other
// replica serves the refreshed token without calling the provider, which
// saw one refresh and no reuse. Without the wait for the flight, the
// rotated token would die with the process and the next refresh would be
// a lost one.
func TestChaosSIGTERMDuringRefresh(t *testing.T) {
	multiProcess(t)
	arrived := make(chan struct{}, 4)
	idpCfg := fakeidp.Config{OnRequest: func(endpoint string) {
		if endpoint == "token" {
			arrived <- struct{}{}
		}
	}}
	rs := startReplicaSet(t, 2, idpCfg, pgtest.NewDatabase(t), nil)
	families := rs.seed(t, time.Now().Add(-time.Minute), "s1")
	rs.idp.SetFaults(fakeidp.Faults{Latency: 2 * time.Second})

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_, err := rs.client(0).Token(ctx, "s1", "bench", 0)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the impatient caller: %v, want its own deadline", err)
	}
	await.Signal(t, "the refresh to reach the provider", arrived)
	if err := rs.replicas[0].Stop(); err != nil { // SIGTERM, then a clean exit
		t.Fatal(err)
	}
	rs.idp.SetFaults(fakeidp.Faults{})
	logs := rs.replicas[0].Logs()
	if !strings.Contains(logs, "shutting down") || strings.Contains(logs, "lost refresh") {
		t.Fatalf("r0 did not shut down cleanly with its refresh committed:\n%s", logs)
	}
	l, err := rs.client(1).Link(context.Background(), "s1", "bench")
	if err != nil || l.State != string(tokenbroker.LinkActive) || l.Generation != 2 {
		t.Fatalf("after r0 exited: %+v, %v; want active at generation 2 (the refresh committed)", l, err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tok, err := rs.client(1).Token(ctx, "s1", "bench", 0)
	if err != nil || !tokenWorks(t, rs.idp, tok.AccessToken) {
		t.Fatalf("r1 after r0 exited: %v", err)
	}
	st := rs.idp.Stats()
	t.Logf("SIGTERM during a refresh: %d provider refresh call(s), %d reuse detections, link at generation %d", st.RefreshCalls, st.ReuseDetections, l.Generation)
	if fam := st.Families[families["s1"]]; st.RefreshCalls != 1 || st.ReuseDetections != 0 || fam.Revoked {
		t.Fatalf("provider: %d refresh calls, %d reuse detections, grant %+v; want one call, no reuse", st.RefreshCalls, st.ReuseDetections, fam)
	}
}
