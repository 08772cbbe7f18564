package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/bench"
	"github.com/tokenbroker/tokenbroker/internal/pgtest"
)

// TestBenchFleet runs bench fleet on a small fleet on each store (two
// replicas on PostgreSQL): the background refresher of real serve
// processes refreshes every seeded link exactly once (provider calls =
// refreshes = links, across replicas), without errors, and every figure
// of the JSON line is there. It asserts no timing.
func TestBenchFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	for _, tc := range []struct {
		store           string
		replicas, links int
	}{{"sqlite", 1, 300}, {"postgres", 2, 300}} {
		t.Run(tc.store, func(t *testing.T) {
			if tc.store == "postgres" {
				pgtest.RequireBinaries(t)
			}
			exe, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res, err := bench.RunFleet(ctx, bench.FleetOptions{Exe: exe, Env: childEnv(), Links: tc.links, Replicas: tc.replicas,
				Store: tc.store, Duration: time.Minute, Interval: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if res.Refreshes != int64(tc.links) || res.ProviderRefreshCalls != int64(tc.links) || res.Errors != 0 {
				t.Fatalf("%d links: %d refreshes, %d provider calls, %.0f errors", tc.links, res.Refreshes, res.ProviderRefreshCalls, res.Errors)
			}
			if res.RefreshesPerS <= 0 || res.RSSMB <= 0 || res.ScanMS.Max <= 0 || res.DBSizeMB <= 0 || res.SeedS <= 0 {
				t.Fatalf("result %+v", *res)
			}
		})
	}
}
