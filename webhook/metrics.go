package webhook

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenbroker/tokenbroker"
)

// Metrics are the dispatcher's Prometheus series. Create them with
// [NewMetrics].
type Metrics struct {
	deliveries *prometheus.CounterVec
	duration   *prometheus.HistogramVec
}

// NewMetrics registers with reg (nil: none):
//
//   - tokenbroker_webhook_deliveries_total{endpoint, outcome}: attempts by
//     outcome (delivered, retry, dead, gone, lost_lease);
//   - tokenbroker_webhook_delivery_duration_seconds{endpoint}: how long
//     receivers took to answer;
//
// and, read from the store at each scrape (see [OutboxCollector]), the
// outbox's depth, dead letters and the age of its oldest pending event.
func NewMetrics(reg prometheus.Registerer, store tokenbroker.OutboxStore, log *slog.Logger) *Metrics {
	m := &Metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_webhook_deliveries_total",
			Help: "Webhook delivery attempts by endpoint and outcome: delivered, retry, dead (retry window over), gone (410), lost_lease.",
		}, []string{"endpoint", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tokenbroker_webhook_delivery_duration_seconds",
			Help:    "Time from sending a webhook request to the receiver's answer (or failure).",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint"}),
	}
	if reg != nil {
		reg.MustRegister(m.deliveries, m.duration)
		if store != nil {
			reg.MustRegister(OutboxCollector(store, time.Now, log))
		}
	}
	return m
}

func (m *Metrics) observe(endpoint, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.deliveries.WithLabelValues(endpoint, outcome).Inc()
	if outcome != OutcomeLostLease {
		m.duration.WithLabelValues(endpoint).Observe(d.Seconds())
	}
}

var (
	pendingDesc = prometheus.NewDesc("tokenbroker_webhook_outbox_pending",
		"Webhook deliveries waiting in the outbox (routed or not), across all replicas.", nil, nil)
	deadDesc = prometheus.NewDesc("tokenbroker_webhook_dead_letters",
		"Webhook deliveries given up on (retry window over, or 410), kept for inspection.", nil, nil)
	oldestDesc = prometheus.NewDesc("tokenbroker_webhook_oldest_pending_age_seconds",
		"Age of the oldest pending webhook event; 0 when none is pending.", nil, nil)
)

// OutboxCollector reports the outbox's gauges, read from store at scrape
// time (one indexed statement, bounded to 5 seconds). now is the clock of
// the age gauge.
func OutboxCollector(store tokenbroker.OutboxStore, now func() time.Time, log *slog.Logger) prometheus.Collector {
	if log == nil {
		log = slog.Default()
	}
	return outboxCollector{store, now, log}
}

type outboxCollector struct {
	store tokenbroker.OutboxStore
	now   func() time.Time
	log   *slog.Logger
}

func (c outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- deadDesc
	ch <- oldestDesc
}

func (c outboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.store.OutboxStats(ctx)
	if err != nil {
		c.log.Warn("cannot read the webhook outbox for metrics", "err", err)
		ch <- prometheus.NewInvalidMetric(pendingDesc, err)
		return
	}
	age := 0.0
	if !st.OldestPending.IsZero() {
		age = max(0, c.now().Sub(st.OldestPending).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(st.Pending))
	ch <- prometheus.MustNewConstMetric(deadDesc, prometheus.GaugeValue, float64(st.Dead))
	ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, age)
}
