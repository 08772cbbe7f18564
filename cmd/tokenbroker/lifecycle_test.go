package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/client"
	"github.com/tokenbroker/tokenbroker/crypt"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/bench"
	"github.com/tokenbroker/tokenbroker/internal/pgtest"
	"github.com/tokenbroker/tokenbroker/store/postgres"
)

// lifecycleReplicas is n serve replicas on one PostgreSQL database and one
// fakeidp, with extra environment on top of bench.ReplicaEnv (which turns
// the background refresher off) and extra serve flags.
type lifecycleReplicas struct {
	idp      *fakeidp.Server
	dbURL    string
	replicas []*bench.Replica
	clients  []*client.Client
	env      []string
	exe      string
}

func startLifecycleReplicas(t *testing.T, n int, idpCfg fakeidp.Config, env []string, args ...string) *lifecycleReplicas {
	t.Helper()
	pgtest.RequireBinaries(t)
	lr := &lifecycleReplicas{dbURL: pgtest.NewDatabase(t)}
	var err error
	if lr.exe, err = os.Executable(); err != nil {
		t.Fatal(err)
	}
	if lr.idp, err = fakeidp.Start(idpCfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lr.idp.Close)
	key, err := crypt.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	lr.env = childEnv(append(bench.ReplicaEnv(lr.idp, key, lr.dbURL, filepath.Join(t.TempDir(), "data")), env...)...)
	apiKey, err := bench.Setup(context.Background(), lr.exe, lr.env)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		name := fmt.Sprintf("r%d", i)
		r, err := bench.StartReplica(context.Background(), name, lr.exe,
			append([]string{"serve", "--addr", "127.0.0.1:0", "--replica-id", name}, args...), lr.env)
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
		lr.replicas = append(lr.replicas, r)
		lr.clients = append(lr.clients, client.New(r.URL, apiKey))
	}
	return lr
}

// TestBackgroundRefreshOnThreeReplicas: three replicas with the background
// refresher on (as serve runs by default) and 200 links that enter their
// refresh-ahead window: the replicas' refreshers, scanning at once, refresh
// each link exactly once (fakeidp counts the calls per token family), break
// none, and callers then get the new tokens without any provider call.
func TestBackgroundRefreshOnThreeReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	t.Parallel()
	start0 := time.Now()
	var calls atomic.Int64
	allCalled := make(chan struct{})
	const links = 200
	lr := startLifecycleReplicas(t, 3, fakeidp.Config{OnRequest: func(endpoint string) {
		if endpoint == "token" && calls.Add(1) == links {
			close(allCalled)
		}
	}}, []string{
		"TOKENBROKER_BACKGROUND_REFRESH=true",
		"TOKENBROKER_BACKGROUND_REFRESH_INTERVAL=300ms",
		"TOKENBROKER_PROVIDER_BENCH_REFRESH_AHEAD=2m",
	})
	// The links are imported valid for 4 s: their window is half their
	// lifetime (2 s), so the scans find them due 2 s after the import.
	soon := time.Now().Add(4 * time.Second)
	families := map[string]string{}
	for i := range links {
		u := fmt.Sprintf("bg%03d", i)
		tok, err := lr.idp.IssueToken(u)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lr.clients[i%3].ImportLink(context.Background(), u, "bench",
			client.ImportRequest{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: "Bearer", Expiry: &soon}); err != nil {
			t.Fatal(err)
		}
		families[u] = tok.Family
	}
	select {
	case <-allCalled:
	case <-time.After(60 * time.Second):
		t.Fatalf("%d of %d links refreshed in the background within a minute", calls.Load(), links)
	}
	st, err := postgres.Open(context.Background(), lr.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// The commits follow the provider's answers; their rows have no event
	// the test can wait for.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM links WHERE generation = 2 AND state = 'active'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == links {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d links at generation 2", n, links)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("200 links refreshed in the background %v after the test started", time.Since(start0).Round(time.Millisecond))
	// A few more scans of every replica find nothing due.
	time.Sleep(time.Second)
	stats := lr.idp.Stats()
	for u, fam := range families {
		if n := stats.Families[fam].RefreshCalls; n != 1 {
			t.Errorf("%s: %d provider refresh calls, want exactly 1", u, n)
		}
	}
	if stats.ReuseDetections != 0 || stats.RefreshCalls != links {
		t.Fatalf("provider: %d refresh calls for %d links, %d reuse detections", stats.RefreshCalls, links, stats.ReuseDetections)
	}
	for i, u := range []string{"bg000", "bg100", "bg199"} {
		tok, err := lr.clients[i].Token(context.Background(), u, "bench", 0)
		if err != nil || tok.AccessToken == "" {
			t.Fatalf("%s: %v", u, err)
		}
	}
	if n := lr.idp.Stats().RefreshCalls; n != links {
		t.Fatalf("callers after the background refresh caused %d provider calls", n-links)
	}
	for _, r := range lr.replicas {
		_, body := get(t, context.Background(), r.URL+"/metrics")
		if !containsLine(body, "tokenbroker_refresher_lag_seconds 0") || !containsLine(body, `tokenbroker_links{provider="bench",state="active"} 200`) {
			t.Errorf("%s /metrics: no zero lag or 200 active links:\n%.3000s", r.Name, body)
		}
	}
}

// containsLine reports whether body has line as one of its lines.
func containsLine(body, line string) bool {
	return slices.Contains(strings.Split(body, "\n"), line)
}
