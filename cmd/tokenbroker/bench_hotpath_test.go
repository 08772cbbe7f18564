package main

import (
	"context"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/bench"
	"github.com/tokenbroker/tokenbroker/internal/pgtest"
)

// TestBenchHotpath runs bench hotpath briefly on each store (PostgreSQL
// with two brokers on one database): every figure of its JSON line is
// there and no broker request failed. It asserts no timing.
func TestBenchHotpath(t *testing.T) {
	for _, tc := range []struct {
		store    string
		replicas int
	}{{"sqlite", 1}, {"postgres", 2}} {
		t.Run(tc.store, func(t *testing.T) {
			if tc.store == "postgres" {
				pgtest.RequireBinaries(t)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := bench.RunHotpath(ctx, bench.HotpathOptions{NewBroker: newBenchBroker, Duration: 400 * time.Millisecond,
				Concurrency: 4, Rounds: 2, Store: tc.store, Replicas: tc.replicas})
			if err != nil {
				t.Fatal(err)
			}
			if res.BrokerRPS <= 0 || res.BareRPS <= 0 || res.Ratio <= 0 || res.BrokerErrors != 0 ||
				res.BrokerAllocsPerReq <= 0 || res.BareAllocsPerReq <= 0 || res.Store != tc.store || res.Replicas != tc.replicas {
				t.Fatalf("result %+v", *res)
			}
		})
	}
}
