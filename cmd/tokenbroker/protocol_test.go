package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/client"
	"github.com/tokenbroker/tokenbroker/crypt"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/bench"
	"github.com/tokenbroker/tokenbroker/internal/pgcluster"
	"github.com/tokenbroker/tokenbroker/internal/pgtest"
	"github.com/tokenbroker/tokenbroker/store/postgres"
)

// The multi-process tests of the refresh protocol's edges (docs/design.md,
// "Protocol v2"), with real `tokenbroker serve` replicas and serve's
// defaults unless said otherwise.

// TestHerdKillHolder: the replica holding the lease is SIGKILLed while its
// provider call is in flight. With the default 10 s lease (renewed) and 1 s
// grace, every caller of the surviving replicas gets a definite answer
// within 12 s. The provider processed the dead holder's request, so its
// rotated refresh token died with it: the survivors' refresh is a counted
// lost refresh (holder_died), and they answer reauth_required.
func TestHerdKillHolder(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	pgtest.RequireBinaries(t)
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := bench.RunHerd(ctx, bench.HerdOptions{
		Exe: exe, Env: childEnv(),
		Replicas: 3, Callers: 30, Rounds: 1, Links: 1,
		ProviderLatency: 200 * time.Millisecond, TokenTTL: 2 * time.Second,
		Strategy: bench.StrategyCoordinated, Store: "postgres", KillHolder: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecretsLogged(t, res.ReplicaLogs...)
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

// TestHerdSlowProvider: a provider that takes 12 s to answer (longer than
// the default 10 s lease) is waited for by every replica's callers, and
// called once: the holder renews its lease while it waits.
func TestHerdSlowProvider(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	pgtest.RequireBinaries(t)
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := bench.RunHerd(ctx, bench.HerdOptions{
		Exe: exe, Env: childEnv(),
		Replicas: 3, Callers: 10, Rounds: 1, Links: 1,
		ProviderLatency: 12 * time.Second, TokenTTL: 16 * time.Second, // the import validates the token at the slow provider too
		Strategy: bench.StrategyCoordinated, Store: "postgres",
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ProviderRefreshCalls != 1 || res.ReuseDetections != 0 || res.CallerErrors != 0 || res.LinksBroken != 0 {
		t.Fatalf("a 12 s provider: %d calls (want 1), %d reuse, %d caller errors %v, %d links broken",
			res.ProviderRefreshCalls, res.ReuseDetections, res.CallerErrors, res.ErrorCodes, res.LinksBroken)
	}
	if res.LatencyMS.Max < 12000 {
		t.Fatalf("callers answered in %.0f ms: the provider's 12 s were not in the path", res.LatencyMS.Max)
	}
}

// replicaSet is n serve replicas on one PostgreSQL database and one fakeidp.
type replicaSet struct {
	idp      *fakeidp.Server
	replicas []*bench.Replica
	apiKey   string
	clients  []*client.Client
}

func startReplicaSet(t *testing.T, n int, idpCfg fakeidp.Config, dbURL string, args ...string) *replicaSet {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rs := &replicaSet{}
	if rs.idp, err = fakeidp.Start(idpCfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.idp.Close)
	key, err := crypt.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	env := childEnv(bench.ReplicaEnv(rs.idp, key, dbURL, filepath.Join(t.TempDir(), "data"))...)
	if rs.apiKey, err = bench.Setup(context.Background(), exe, env); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		name := fmt.Sprintf("r%d", i)
		a := append([]string{"serve", "--addr", "127.0.0.1:0", "--replica-id", name}, args...)
		r, err := bench.StartReplica(context.Background(), name, exe, a, env)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = r.Stop()
			assertNoSecretsLogged(t, r.Logs())
			if t.Failed() {
				t.Logf("%s log:\n%s", name, r.Logs())
			}
		})
		rs.replicas = append(rs.replicas, r)
		rs.clients = append(rs.clients, client.New(r.URL, rs.apiKey))
	}
	return rs
}

// seed imports an expired link for each user and returns their token
// families at the provider.
func (rs *replicaSet) seed(t *testing.T, users ...string) map[string]string {
	t.Helper()
	families := map[string]string{}
	past := time.Now().Add(-time.Minute)
	for _, u := range users {
		tok, err := rs.idp.IssueToken(u)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rs.clients[0].ImportLink(context.Background(), u, "bench",
			client.ImportRequest{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: "Bearer", Expiry: &past}); err != nil {
			t.Fatal(err)
		}
		families[u] = tok.Family
	}
	return families
}

// TestProviderOutageOnReplicas: a 20 s provider outage (instant 503s) over
// 5 links, with callers on 3 replicas asking every 100 ms, costs each link
// at most 10 provider calls (the link's backoff on the row, the provider's
// circuit); callers get provider_unavailable, no link breaks.
func TestProviderOutageOnReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	pgtest.RequireBinaries(t)
	t.Parallel()
	rs := startReplicaSet(t, 3, fakeidp.Config{Faults: fakeidp.Faults{P503: 1}}, pgtest.NewDatabase(t))
	users := []string{"o1", "o2", "o3", "o4", "o5"}
	families := rs.seed(t, users...)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		codes = map[string]int{}
	)
	for ri := range rs.clients {
		for _, u := range users {
			wg.Go(func() {
				for ctx.Err() == nil {
					_, err := rs.clients[ri].Token(ctx, u, "bench", 0)
					var ce *client.Error
					code := "ok"
					switch {
					case errors.As(err, &ce):
						code = ce.Code
					case err != nil && ctx.Err() == nil:
						code = "transport"
					case err != nil:
						return
					}
					mu.Lock()
					codes[code]++
					mu.Unlock()
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
	t.Logf("20 s outage: %d provider calls for %d links, caller answers %v", st.RefreshCalls, len(users), codes)
	for _, u := range users {
		if n := st.Families[families[u]].RefreshCalls; n > 10 {
			t.Errorf("link %s: %d provider calls during the outage, want at most 10", u, n)
		}
	}
	for code := range codes {
		if code != tokenbroker.EPROVIDERUNAVAILABLE {
			t.Errorf("callers got %q (%d times), want only provider_unavailable", code, codes[code])
		}
	}
	for _, u := range users {
		l, err := rs.clients[1].Link(context.Background(), u, "bench")
		if err != nil || l.State != string(tokenbroker.LinkActive) {
			t.Errorf("link %s after the outage: %+v, %v", u, l, err)
		}
	}
}

// TestPostgresHaltedDuringRefreshes: PostgreSQL stops, for longer than the
// lease TTL plus its grace, while three refreshes are in flight. While it
// is down, callers get 503 store_unavailable. When it returns, the holders,
// which kept the provider's answers in memory and retried their commits,
// commit before any other replica, whose callers keep asking throughout, can
// take their expired leases over (the grace counts from the first look
// after the return): one provider call
// per link, no reuse, every link active on its next generation - nothing
// lost, nothing resurrected.
func TestPostgresHaltedDuringRefreshes(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	pgtest.RequireBinaries(t)
	t.Parallel()
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
	rs := startReplicaSet(t, 3, idpCfg, dbURL, "--lease-ttl", "3s")
	users := []string{"p1", "p2", "p3"}
	families := rs.seed(t, users...)

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
				tok, err := rs.clients[(i+ri)%3].Token(ctx, u, "bench", 0)
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
		waitEvent(t, "a refresh to reach the provider", arrived)
	}
	// The three holders are waiting for the provider: the database goes.
	cluster.Halt()
	// Callers keep asking every replica for every link throughout, so
	// would-be successors are there the moment the database returns.
	hammer, stopHammer := context.WithCancel(context.Background())
	var hammering sync.WaitGroup
	for _, u := range users {
		for ri := range rs.clients {
			hammering.Go(func() {
				for hammer.Err() == nil {
					ctx, cancel := context.WithTimeout(hammer, 5*time.Second)
					_, _ = rs.clients[ri].Token(ctx, u, "bench", 0)
					cancel()
					select {
					case <-hammer.Done():
					case <-time.After(50 * time.Millisecond):
					}
				}
			})
		}
	}
	// While it is down, a new caller gets a fast, typed 503.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err = rs.clients[0].Token(ctx, "p1", "bench", 0)
	cancel()
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != tokenbroker.ESTOREUNAVAILABLE || ce.RetryAfter <= 0 {
		t.Fatalf("with the database down: %v, want store_unavailable with Retry-After", err)
	}
	time.Sleep(6 * time.Second) // an outage longer than the lease TTL (3 s) and its grace (1 s)
	if err := cluster.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // the callers go on past the leases' grace
	stopHammer()
	hammering.Wait()

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
			tok, err = rs.clients[ri].Token(ctx, u, "bench", 0)
			cancel()
			if err != nil {
				t.Fatalf("%s on r%d after the database returned: %v", u, ri, err)
			}
		}
		if prev, ok := got[u]; ok && prev != tok.AccessToken {
			t.Errorf("%s: the token after the outage differs from the one the holder's callers got", u)
		}
		l, err := rs.clients[2].Link(context.Background(), u, "bench")
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
}

// TestListenerLogsThroughServesHandler: the PostgreSQL listener's
// reconnection warning is a line of serve's configured handler (JSON here),
// like every other line, not of the default logger.
func TestListenerLogsThroughServesHandler(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	pgtest.RequireBinaries(t)
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	rs := startReplicaSet(t, 1, fakeidp.Config{}, dbURL, "--log-format", "json")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The coordinator's token cache listens from the start.
	for {
		n, err := pgtest.SharedCluster(t).Terminate(ctx, dbURL, postgres.ListenerApplicationName)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the listener never connected")
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Lost while listening, or while setting up LISTEN: either line will do.
	if err := rs.replicas[0].WaitLog(ctx, `"msg":"postgres: listener `); err != nil {
		t.Fatalf("%v\n%s", err, rs.replicas[0].Logs())
	}
	for _, line := range strings.Split(strings.TrimSpace(rs.replicas[0].Logs()), "\n") {
		if !strings.HasPrefix(line, "{") {
			t.Fatalf("a line outside the JSON handler: %s", line)
		}
	}
}
