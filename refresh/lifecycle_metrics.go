package refresh

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenbroker/tokenbroker"
)

// lifecycleMetrics are the series of token requests, refresh outcomes,
// waits and the background refresher.
type lifecycleMetrics struct {
	tokenRequests *prometheus.CounterVec
	// byOutcome holds the children of tokenRequests for the known
	// outcomes, resolved once: the token path reads a map, not the
	// vector's lock.
	byOutcome       map[string]prometheus.Counter
	refreshOutcomes *prometheus.CounterVec
	waits           prometheus.Counter
	wakeups         *prometheus.CounterVec
	lag             prometheus.Gauge
	due             prometheus.Gauge
	actions         *prometheus.CounterVec
}

// Token request outcomes besides the error codes.
var tokenOutcomes = []string{"ok", "canceled", tokenbroker.EREAUTHREQUIRED, tokenbroker.EPROVIDERUNAVAILABLE,
	tokenbroker.EPROVIDERMISCONFIGURED, tokenbroker.ESTOREUNAVAILABLE, tokenbroker.ENOTFOUND, tokenbroker.EINVALID,
	tokenbroker.EINTERNAL}

// Refresher actions.
const (
	actionRefresh      = "refresh"
	actionKeepAlive    = "keep_alive"
	actionFailed       = "failed"
	actionIdle         = "idle"
	actionInactivity   = "inactivity"
	actionNoRefreshTok = "no_refresh_token"
)

func newLifecycleMetrics() *lifecycleMetrics {
	m := &lifecycleMetrics{
		tokenRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_token_requests_total",
			Help: "Token requests by outcome: ok, canceled, or the error code (reauth_required, provider_unavailable, provider_misconfigured, store_unavailable, not_found, invalid_request, internal).",
		}, []string{"outcome"}),
		byOutcome: map[string]prometheus.Counter{},
		refreshOutcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_refreshes_total",
			Help: "Provider refresh calls by provider and outcome: ok (committed), rejected, client, not_processed, uncertain, lost (answered but not committed).",
		}, []string{"provider", "outcome"}),
		waits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenbroker_lease_waits_total",
			Help: "Waits of a flight for another holder's refresh (a lease held elsewhere).",
		}),
		wakeups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_lease_wakeups_total",
			Help: "How waits for another holder ended: signal (the link's change signal) or poll (the poll tick, or the end of the holder's lease or grace).",
		}, []string{"source"}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tokenbroker_refresher_lag_seconds",
			Help: "How late the background refresher's most overdue link is, at its last scan (0: none overdue): the time since that link entered its refresh-ahead window.",
		}),
		due: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tokenbroker_refresher_due_links",
			Help: "Links inside their refresh-ahead window at the background refresher's last scan.",
		}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_refresher_actions_total",
			Help: "What this replica's background refresher did: refresh and keep_alive (a refresh of a link due, or of one whose grant is old, asked of the coordinator, which calls the provider unless another replica did), failed (such a refresh failed), idle (a link marked idle: unused), inactivity and no_refresh_token (a link marked reauth_required).",
		}, []string{"action"}),
	}
	for _, o := range tokenOutcomes {
		m.byOutcome[o] = m.tokenRequests.WithLabelValues(o)
	}
	for _, s := range []string{"signal", "poll"} {
		m.wakeups.WithLabelValues(s)
	}
	for _, a := range []string{actionRefresh, actionKeepAlive, actionFailed, actionIdle, actionInactivity, actionNoRefreshTok} {
		m.actions.WithLabelValues(a)
	}
	return m
}

func (m *lifecycleMetrics) register(reg prometheus.Registerer) {
	reg.MustRegister(m.tokenRequests, m.refreshOutcomes, m.waits, m.wakeups, m.lag, m.due, m.actions)
}

func (m *Metrics) tokenRequest(outcome string) {
	if m == nil {
		return
	}
	if c, ok := m.lifecycle.byOutcome[outcome]; ok {
		c.Inc()
		return
	}
	m.lifecycle.tokenRequests.WithLabelValues(outcome).Inc()
}

func (m *Metrics) refreshOutcome(provider, outcome string) {
	if m != nil {
		m.lifecycle.refreshOutcomes.WithLabelValues(provider, outcome).Inc()
	}
}

func (m *Metrics) wait() {
	if m != nil {
		m.lifecycle.waits.Inc()
	}
}

func (m *Metrics) wakeup(bySignal bool) {
	if m == nil {
		return
	}
	if bySignal {
		m.lifecycle.wakeups.WithLabelValues("signal").Inc()
	} else {
		m.lifecycle.wakeups.WithLabelValues("poll").Inc()
	}
}

func (m *Metrics) refresherScan(lag time.Duration, due int) {
	if m != nil {
		m.lifecycle.lag.Set(lag.Seconds())
		m.lifecycle.due.Set(float64(due))
	}
}

func (m *Metrics) refresherAction(action string) {
	if m != nil {
		m.lifecycle.actions.WithLabelValues(action).Inc()
	}
}

// LinkStateStore is what [NewLinkStateCollector] reads.
type LinkStateStore interface {
	CountLinksByState(ctx context.Context) ([]tokenbroker.LinkStateCount, error)
}

var linksDesc = prometheus.NewDesc("tokenbroker_links",
	"Links by provider and state (active, degraded, idle, reauth_required), as the database counts them (every replica reports the same: aggregate with max).",
	[]string{"provider", "state"}, nil)

// NewLinkStateCollector returns the collector of tokenbroker_links: the
// number of links per provider and state, read at each scrape from the
// counts the database keeps with every write (one small row per provider
// and state, so a scrape costs one tiny query).
func NewLinkStateCollector(s LinkStateStore, log *slog.Logger) prometheus.Collector {
	if log == nil {
		log = slog.Default()
	}
	return linkStateCollector{s: s, log: log}
}

type linkStateCollector struct {
	s   LinkStateStore
	log *slog.Logger
}

func (c linkStateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- linksDesc }

func (c linkStateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.s.CountLinksByState(ctx)
	if err != nil {
		c.log.Warn("metrics: count links by state", "err", err)
		ch <- prometheus.NewInvalidMetric(linksDesc, err)
		return
	}
	for _, n := range counts {
		ch <- prometheus.MustNewConstMetric(linksDesc, prometheus.GaugeValue, float64(n.Count), n.ProviderID, string(n.State))
	}
}
