package main

import (
	"context"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tokenbroker/tokenbroker/refresh"
	"github.com/tokenbroker/tokenbroker/web"
)

// runtimeStatus gives the console's overview what this replica measures:
// the p50 and p99 of its provider refresh calls since it started, read from
// its own metrics (other replicas measure their own), and what its
// background refresher's last scan found (nil: the refresher is off).
func runtimeStatus(reg prometheus.Gatherer, r *refresh.Refresher) func(context.Context) *web.RuntimeStatus {
	return func(context.Context) *web.RuntimeStatus {
		mfs, err := reg.Gather()
		if err != nil {
			return nil
		}
		st := &web.RuntimeStatus{Providers: map[string]web.ProviderStatus{}}
		if r != nil {
			if s := r.Status(); !s.At.IsZero() {
				st.Refresher = &web.RefresherStatus{Lag: s.Lag, Due: int64(s.Due)}
			}
		}
		for _, mf := range mfs {
			if mf.GetName() != refresh.ProviderLatencyMetric {
				continue
			}
			for _, m := range mf.GetMetric() {
				var provider string
				for _, lp := range m.GetLabel() {
					if lp.GetName() == "provider" {
						provider = lp.GetValue()
					}
				}
				h := m.GetHistogram()
				if provider == "" || h.GetSampleCount() == 0 {
					continue
				}
				st.Providers[provider] = web.ProviderStatus{
					LatencyP50: quantile(h, 0.50),
					LatencyP99: quantile(h, 0.99),
				}
			}
		}
		return st
	}
}

// quantile estimates the q-quantile of a cumulative histogram the way
// PromQL's histogram_quantile does: linear within the bucket that holds
// it, the highest finite bound when it falls in +Inf.
func quantile(h *dto.Histogram, q float64) time.Duration {
	total := float64(h.GetSampleCount())
	rank := q * total
	lower, below := 0.0, 0.0
	for _, b := range h.GetBucket() {
		upper, count := b.GetUpperBound(), float64(b.GetCumulativeCount())
		if count >= rank {
			if math.IsInf(upper, 1) {
				return seconds(lower)
			}
			if count == below {
				return seconds(upper)
			}
			return seconds(lower + (upper-lower)*(rank-below)/(count-below))
		}
		lower, below = upper, count
	}
	return seconds(lower)
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
