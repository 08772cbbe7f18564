package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/bench"
	"github.com/tokenbroker/tokenbroker/internal/pgtest"
	"github.com/tokenbroker/tokenbroker/store/postgres"
)

// The multi-process tests of the refresh protocol's edges (docs/design.md,
// "Protocol v2"), with real `tokenbroker serve` replicas and serve's
// defaults unless said otherwise.

// TestHerdSlowProvider: a provider that takes 12 s to answer (longer than
// the default 10 s lease) is waited for by every replica's callers, and
// called once: the holder renews its lease while it waits.
func TestHerdSlowProvider(t *testing.T) {
	multiProcess(t)
	res := runHerd(t, 2*time.Minute, bench.HerdOptions{
		Replicas: 3, Callers: 10, Rounds: 1, Links: 1,
		ProviderLatency: 12 * time.Second, TokenTTL: 16 * time.Second, // the import validates the token at the slow provider too
		Strategy: bench.StrategyCoordinated, Store: "postgres",
	})
	if res.ProviderRefreshCalls != 1 || res.ReuseDetections != 0 || res.CallerErrors != 0 || res.LinksBroken != 0 {
		t.Fatalf("a 12 s provider: %d calls (want 1), %d reuse, %d caller errors %v, %d links broken",
			res.ProviderRefreshCalls, res.ReuseDetections, res.CallerErrors, res.ErrorCodes, res.LinksBroken)
	}
	if res.LatencyMS.Max < 12000 {
		t.Fatalf("callers answered in %.0f ms: the provider's 12 s were not in the path", res.LatencyMS.Max)
	}
}

// TestListenerLogsThroughServesHandler: the PostgreSQL listener's
// reconnection warning is a line of serve's configured handler (JSON here),
// like every other line, not of the default logger.
func TestListenerLogsThroughServesHandler(t *testing.T) {
	multiProcess(t)
	dbURL := pgtest.NewDatabase(t)
	rs := startReplicaSet(t, 1, fakeidp.Config{}, dbURL, nil, "--log-format", "json")
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
