package main

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenbroker/tokenbroker/refresh"
)

// TestRuntimeStatusLatency: the console's provider latency comes from the
// coordinator's histogram: 90 calls of 40 ms and 10 of 2 s give a p50 in
// the 25-50 ms bucket and a p99 in the 1-2.5 s one.
func TestRuntimeStatusLatency(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: refresh.ProviderLatencyMetric, Buckets: refresh.ProviderLatencyBuckets,
	}, []string{"provider"})
	reg.MustRegister(h)
	for range 90 {
		h.WithLabelValues("github").Observe(0.040)
	}
	for range 10 {
		h.WithLabelValues("github").Observe(2.0)
	}
	st := runtimeStatus(reg, nil)(context.Background())
	got, ok := st.Providers["github"]
	if !ok {
		t.Fatalf("no latency for github: %+v", st)
	}
	if got.LatencyP50 < 25*time.Millisecond || got.LatencyP50 > 50*time.Millisecond {
		t.Errorf("p50 = %v, want within the 25-50 ms bucket", got.LatencyP50)
	}
	if got.LatencyP99 < time.Second || got.LatencyP99 > 2500*time.Millisecond {
		t.Errorf("p99 = %v, want within the 1-2.5 s bucket", got.LatencyP99)
	}
	if _, ok := st.Providers["gitlab"]; ok {
		t.Error("a provider without calls has a latency")
	}
	// The coordinator registers the family under that name.
	creg := prometheus.NewRegistry()
	refresh.NewMetrics(creg)
	if err := creg.Register(h); err == nil {
		t.Fatalf("refresh.NewMetrics does not register %s", refresh.ProviderLatencyMetric)
	}
}
