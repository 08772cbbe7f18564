package audit

import "github.com/prometheus/client_golang/prometheus"

var (
	writtenDesc = prometheus.NewDesc("tokenbroker_audit_events_written_total",
		"Audit events written to the store.", nil, nil)
	droppedDesc = prometheus.NewDesc("tokenbroker_audit_events_dropped_total",
		"Audit events lost: buffer full, store failing longer than the buffer lasts, or recorded after close.", nil, nil)
	rowsDesc = prometheus.NewDesc("tokenbroker_audit_rows_written_total",
		"Audit rows written to the store (an aggregated token.read row counts many events).", nil, nil)
)

// Collector returns a Prometheus collector of the Batcher's counters
// (tokenbroker_audit_events_written_total,
// tokenbroker_audit_events_dropped_total,
// tokenbroker_audit_rows_written_total and tokenbroker_audit_lag_seconds),
// read at scrape time. Register it
// once: reg.MustRegister(b.Collector()).
func (b *Batcher) Collector() prometheus.Collector { return collector{b} }

type collector struct{ b *Batcher }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- writtenDesc
	ch <- droppedDesc
	ch <- rowsDesc
	ch <- lagDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(writtenDesc, prometheus.CounterValue, float64(c.b.Written()))
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(c.b.Dropped()))
	ch <- prometheus.MustNewConstMetric(rowsDesc, prometheus.CounterValue, float64(c.b.RowsWritten()))
	ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, c.b.Lag(c.b.opts.Now()).Seconds())
}
