package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/client"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/await"
	"github.com/tokenbroker/tokenbroker/internal/bench"
	"github.com/tokenbroker/tokenbroker/internal/pgtest"
)

// runHerdTest runs a herd of this test binary's replicas with o's shape
// (1 link, 50ms provider latency, 2s tokens, 10s leases) and checks that no
// replica logged a secret.
func runHerdTest(t *testing.T, o bench.HerdOptions) *bench.HerdResult {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process test")
	}
	o.Links = 1
	o.ProviderLatency, o.TokenTTL, o.LeaseTTL = 50*time.Millisecond, 2*time.Second, 10*time.Second
	return runHerd(t, 4*time.Minute, o)
}

// runHerd runs a herd of this test binary's replicas as o says, within
// timeout, and checks that no replica logged a secret.
func runHerd(t *testing.T, timeout time.Duration, o bench.HerdOptions) *bench.HerdResult {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	o.Exe, o.Env = exe, childEnv()
	res, err := bench.RunHerd(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecretsLogged(t, res.ReplicaLogs...)
	return res
}

// TestHerdThreeReplicas is the multi-replica proof of the refresh
// protocol: three real `tokenbroker serve` processes on one throwaway
// PostgreSQL, fakeidp with single-use rotating refresh tokens and reuse
// detection, 100 callers per replica, 5 expiries. Every expiry costs
// exactly one provider call, no reuse is detected, no caller fails, no
// link breaks, and every caller of a round gets the same access token.
func TestHerdThreeReplicas(t *testing.T) {
	pgtest.RequireBinaries(t)
	res := runHerdTest(t, bench.HerdOptions{Replicas: 3, Callers: 100, Rounds: 5,
		Strategy: bench.StrategyCoordinated, Store: "postgres"})
	if res.ProviderRefreshCalls != 5 || res.ReuseDetections != 0 || res.CallerErrors != 0 || res.LinksBroken != 0 {
		t.Fatalf("provider calls %d (want 5), reuse detections %d, caller errors %d %v, links broken %d (want 0)",
			res.ProviderRefreshCalls, res.ReuseDetections, res.CallerErrors, res.ErrorCodes, res.LinksBroken)
	}
	if res.CallerRequests != 5*3*100 {
		t.Fatalf("caller requests = %d, want 1500", res.CallerRequests)
	}
	// The same callers on the valid token after each round: all answered,
	// nothing refreshed (the provider calls above are the herds' only).
	if res.BurstRequests != 5*3*100 || res.BurstErrors != 0 || res.BurstLatencyMS.Max <= 0 || res.ToProviderMS.Max <= 0 {
		t.Fatalf("burst: %d requests (want 1500), %d errors, latency %+v, to provider %+v",
			res.BurstRequests, res.BurstErrors, res.BurstLatencyMS, res.ToProviderMS)
	}
	for round, counts := range res.RoundTokens {
		for _, n := range counts {
			if n != 1 {
				t.Fatalf("round %d: callers got %d different tokens, want 1", round+1, n)
			}
		}
	}
}

// TestHerdBaselinesBreak shows, in the same harness, what the coordinator
// prevents: with the naive strategy (a `bench replica`, not `serve`)
// callers fail and the link breaks.
func TestHerdBaselinesBreak(t *testing.T) {
	res := runHerdTest(t, bench.HerdOptions{Replicas: 1, Callers: 30, Rounds: 2,
		Strategy: bench.StrategyNaive, Store: "sqlite"})
	if res.ProviderRefreshCalls <= 1 || res.ReuseDetections == 0 || res.CallerErrors == 0 || res.LinksBroken != 1 {
		t.Fatalf("naive herd should race: %+v", *res)
	}
}

// assertNoSecretsLogged fails if a replica's log holds a token (fakeidp's
// tokens carry a fakeidp_ prefix), an API key (tbk_) or a bearer header.
func assertNoSecretsLogged(t *testing.T, logs ...string) {
	t.Helper()
	assertNoMarkerLogged(t, []string{"fakeidp_at_", "fakeidp_rt_", "fakeidp_dc_", "tbk_", "Bearer "}, logs...)
}

// assertNoMarkerLogged fails t if a log holds one of markers, the
// prefixes of secrets.
func assertNoMarkerLogged(t *testing.T, markers []string, logs ...string) {
	t.Helper()
	for _, l := range logs {
		for _, marker := range markers {
			if strings.Contains(l, marker) {
				t.Errorf("a replica logged a secret (%q):\n%s", marker, l)
			}
		}
	}
}

// crashArgs are the serve flags of the crash tests' replicas: a short
// lease and provider timeout, so a takeover comes within seconds.
var crashArgs = []string{"--lease-ttl", "3s", "--provider-timeout", "1s"}

// askInBackground asks r for user's token without waiting for the answer
// (the request that runs into the injected fault).
func (ce *cluster) askInBackground(r *bench.Replica, user string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = client.New(r.URL, ce.apiKey).Token(ctx, user, "bench", 0)
	}()
}

// seedExpired imports a link whose access token has already expired.
func (ce *cluster) seedExpired(t *testing.T, r *bench.Replica, user string) {
	t.Helper()
	tok, err := ce.idp.IssueToken(user)
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Minute)
	if _, err := client.New(r.URL, ce.apiKey).ImportLink(context.Background(), user, "bench",
		client.ImportRequest{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: "Bearer", Expiry: &past}); err != nil {
		t.Fatal(err)
	}
}

// faultSignal is a slog handler for fakeidp that closes fired the first
// time fakeidp logs that it injects a fault: the event a crash test waits
// for before it kills the replica whose request hit the fault.
type faultSignal struct {
	once  *sync.Once
	fired chan struct{}
}

func newFaultSignal() faultSignal {
	return faultSignal{once: new(sync.Once), fired: make(chan struct{})}
}

func (f faultSignal) Enabled(context.Context, slog.Level) bool { return true }
func (f faultSignal) WithAttrs([]slog.Attr) slog.Handler       { return f }
func (f faultSignal) WithGroup(string) slog.Handler            { return f }
func (f faultSignal) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "fakeidp: injecting fault" {
		f.once.Do(func() { close(f.fired) })
	}
	return nil
}

// TestCrashWhileHoldingLease: a replica is killed with SIGKILL while it
// holds the lease and waits for a provider that does not answer (the
// request never reaches the provider's processing: fakeidp hangs before
// it). Another replica refreshes the link once the lease expires; no reuse
// is detected, the link stays active.
//
// (A provider that processes a request whose client has gone, as fakeidp's
// latency fault does, rotates the token into the void: that is the window
// of TestCrashAfterProviderAnswered.)
func TestCrashWhileHoldingLease(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	hung := newFaultSignal()
	ce := newCluster(t, fakeidp.Config{Faults: fakeidp.Faults{Hang: true}, Logger: slog.New(hung)}, pgtest.NewDatabase(t), nil, crashArgs...)
	r0 := ce.startReplica(t, "r0")
	r1 := ce.startReplica(t, "r1")
	ce.seedExpired(t, r0, "crash-user")

	ce.askInBackground(r0, "crash-user")
	await.Signal(t, "r0's provider call to hang", hung.fired)
	r0.Kill()
	ce.idp.SetFaults(fakeidp.Faults{})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tok, err := client.New(r1.URL, ce.apiKey).Token(ctx, "crash-user", "bench", 0)
	if err != nil {
		t.Fatalf("r1 after r0 died: %v", err)
	}
	if tok.AccessToken == "" {
		t.Fatal("empty token")
	}
	st := ce.idp.Stats()
	if st.ReuseDetections != 0 || st.RefreshSuccesses != 1 {
		t.Fatalf("reuse detections %d (want 0), refresh successes %d (want 1)", st.ReuseDetections, st.RefreshSuccesses)
	}
	l, err := client.New(r1.URL, ce.apiKey).Link(ctx, "crash-user", "bench")
	if err != nil || l.State != string(tokenbroker.LinkActive) {
		t.Fatalf("link after takeover: %+v %v", l, err)
	}
}

// TestCrashAfterProviderAnswered is the window I2 cannot close: a replica
// dies after the provider rotated the refresh token and before its commit.
// The replica that takes over sends the spent refresh token, the provider
// detects the reuse, and the case is logged with a clear reason, counted in
// the metrics and stored on the link, never hidden.
func TestCrashAfterProviderAnswered(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	ce := newCluster(t, fakeidp.Config{}, pgtest.NewDatabase(t), nil, crashArgs...)
	r0 := ce.startReplica(t, "r0", hangBeforeCommitEnv+"=1")
	r1 := ce.startReplica(t, "r1")
	ce.seedExpired(t, r0, "crash-user")

	ce.askInBackground(r0, "crash-user")
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	if err := r0.WaitLog(wctx, hangLogLine); err != nil {
		t.Fatal(err)
	}
	r0.Kill()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := client.New(r1.URL, ce.apiKey).Token(ctx, "crash-user", "bench", 0)
	var ce1 *client.Error
	if !errors.As(err, &ce1) || ce1.Code != tokenbroker.EREAUTHREQUIRED {
		t.Fatalf("r1: got %v, want reauth_required", err)
	}
	if !strings.Contains(r1.Logs(), "lost refresh") {
		t.Fatalf("r1 did not log the lost refresh:\n%s", r1.Logs())
	}
	l, err := client.New(r1.URL, ce.apiKey).Link(ctx, "crash-user", "bench")
	if err != nil || !strings.Contains(l.FailureReason, "lost refresh") {
		t.Fatalf("link failure reason does not name the lost refresh: %+v %v", l, err)
	}
	resp, err := http.Get(r1.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `tokenbroker_refresh_lost_total{reason="holder_died"} 1`; !strings.Contains(string(body), want) {
		t.Fatalf("metrics lack %q", want)
	}
	if st := ce.idp.Stats(); st.ReuseDetections != 1 {
		t.Fatalf("reuse detections = %d, want 1", st.ReuseDetections)
	}
}
