package refresh

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the coordinator's Prometheus counters. A nil *Metrics records
// nothing. Labels carry provider ids and outcomes, never tokens.
type Metrics struct {
	providerCalls *prometheus.CounterVec
	refreshes     *prometheus.CounterVec
	failures      *prometheus.CounterVec
	lostRefreshes *prometheus.CounterVec
}

// NewMetrics creates the counters and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		providerCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_refresh_provider_calls_total",
			Help: "Refresh calls sent to a provider's token endpoint.",
		}, []string{"provider"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_refresh_committed_total",
			Help: "Refreshed tokens committed to the store.",
		}, []string{"provider"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_refresh_failures_total",
			Help: "Failed provider refresh calls, by kind (transient or permanent).",
		}, []string{"provider", "kind"}),
		lostRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_refresh_lost_total",
			Help: "Refreshes whose result was lost: holder_died (a takeover's refresh token was rejected), commit_lost, commit_failed.",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.providerCalls, m.refreshes, m.failures, m.lostRefreshes)
	}
	return m
}

func (m *Metrics) providerCall(provider string) {
	if m != nil {
		m.providerCalls.WithLabelValues(provider).Inc()
	}
}

func (m *Metrics) refreshed(provider string) {
	if m != nil {
		m.refreshes.WithLabelValues(provider).Inc()
	}
}

func (m *Metrics) failed(provider, kind string) {
	if m != nil {
		m.failures.WithLabelValues(provider, kind).Inc()
	}
}

func (m *Metrics) lost(reason string) {
	if m != nil {
		m.lostRefreshes.WithLabelValues(reason).Inc()
	}
}
