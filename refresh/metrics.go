package refresh

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenbroker/tokenbroker"
)

// ProviderLatencyMetric is the name of the histogram of provider refresh
// calls, by provider: the console's latency figures read it.
const ProviderLatencyMetric = "tokenbroker_provider_refresh_duration_seconds"

// ProviderLatencyBuckets are its buckets, in seconds.
var ProviderLatencyBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Metrics are the coordinator's Prometheus series. A nil *Metrics records
// nothing. Labels carry provider ids and outcomes, never tokens.
type Metrics struct {
	providerCalls *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	refreshes     *prometheus.CounterVec
	failures      *prometheus.CounterVec
	lostRefreshes *prometheus.CounterVec
	leases        *prometheus.CounterVec
	renewals      *prometheus.CounterVec
	circuitOpens  *prometheus.CounterVec
	misconfig     *prometheus.GaugeVec
	lifecycle     *lifecycleMetrics
}

// NewMetrics creates the series and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		providerCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_refresh_provider_calls_total",
			Help: "Refresh calls sent to a provider's token endpoint.",
		}, []string{"provider"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    ProviderLatencyMetric,
			Help:    "Duration of refresh calls to a provider's token endpoint, failed ones included.",
			Buckets: ProviderLatencyBuckets,
		}, []string{"provider"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_refresh_committed_total",
			Help: "Refreshed tokens committed to the store.",
		}, []string{"provider"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_refresh_failures_total",
			Help: "Failed provider refresh calls, by class: rejected, client, not_processed, uncertain.",
		}, []string{"provider", "class"}),
		lostRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_refresh_lost_total",
			Help: "Refreshes whose result was lost: holder_died and answer_lost (a rejection explained by an earlier attempt), lease_lost and commit_failed (an answer that could not be committed).",
		}, []string{"reason"}),
		leases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_lease_acquisitions_total",
			Help: "Refresh lease acquisitions by outcome: won, takeover (won from a holder that did not release it), lost.",
		}, []string{"outcome"}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_lease_renewals_total",
			Help: "Refresh lease renewals by outcome: ok, lost, error.",
		}, []string{"outcome"}),
		circuitOpens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_provider_circuit_opened_total",
			Help: "Times this replica opened a provider's circuit after repeated failures across its links.",
		}, []string{"provider"}),
		misconfig: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tokenbroker_provider_misconfigured",
			Help: "1 while this replica last saw the provider refuse this service's client credentials.",
		}, []string{"provider"}),
	}
	// Every outcome exists from the start, so a rate sees a zero rather
	// than no series (takeovers above all: they are rare and alerted on).
	for _, o := range []string{"won", "takeover", "lost"} {
		m.leases.WithLabelValues(o)
	}
	for _, o := range []string{"ok", "lost", "error"} {
		m.renewals.WithLabelValues(o)
	}
	for _, r := range []string{tokenbroker.LossHolderDied, tokenbroker.LossAnswerLost, "lease_lost", "commit_failed"} {
		m.lostRefreshes.WithLabelValues(r)
	}
	m.lifecycle = newLifecycleMetrics()
	if reg != nil {
		reg.MustRegister(m.providerCalls, m.latency, m.refreshes, m.failures, m.lostRefreshes,
			m.leases, m.renewals, m.circuitOpens, m.misconfig)
		m.lifecycle.register(reg)
	}
	return m
}

// LatencyCollector returns the histogram of provider refresh calls
// ([ProviderLatencyMetric]), for a reader that gathers it alone.
func (m *Metrics) LatencyCollector() prometheus.Collector { return m.latency }

func (m *Metrics) providerCall(provider string) {
	if m != nil {
		m.providerCalls.WithLabelValues(provider).Inc()
	}
}

func (m *Metrics) providerLatency(provider string, d time.Duration) {
	if m != nil {
		m.latency.WithLabelValues(provider).Observe(d.Seconds())
	}
}

func (m *Metrics) refreshed(provider string) {
	if m != nil {
		m.refreshes.WithLabelValues(provider).Inc()
		m.refreshOutcome(provider, "ok")
	}
}

func (m *Metrics) failed(provider, class string) {
	if m != nil {
		m.failures.WithLabelValues(provider, class).Inc()
		m.refreshOutcome(provider, class)
	}
}

func (m *Metrics) lost(reason string) {
	if m != nil {
		m.lostRefreshes.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) lease(g *tokenbroker.LeaseGrant) {
	if m == nil {
		return
	}
	switch {
	case g.Won && g.PreviousOwner != "":
		m.leases.WithLabelValues("takeover").Inc()
	case g.Won:
		m.leases.WithLabelValues("won").Inc()
	default:
		m.leases.WithLabelValues("lost").Inc()
	}
}

func (m *Metrics) renewal(outcome string) {
	if m != nil {
		m.renewals.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) circuitOpened(provider string) {
	if m != nil {
		m.circuitOpens.WithLabelValues(provider).Inc()
	}
}

// knownProviders starts the per-provider gauges at zero for every
// configured provider.
func (m *Metrics) knownProviders(ps tokenbroker.Providers) {
	if m == nil {
		return
	}
	for _, p := range ps.List() {
		m.misconfig.WithLabelValues(p.ID())
	}
}

func (m *Metrics) misconfigured(provider string, on bool) {
	if m != nil {
		v := 0.0
		if on {
			v = 1
		}
		m.misconfig.WithLabelValues(provider).Set(v)
	}
}
