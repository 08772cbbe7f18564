package audit

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenbroker/tokenbroker"
)

// notePending records the time of the oldest event in pending (the
// writer's events not yet written) for [Batcher.Lag], after pending was
// written, cut or refilled. Only the writer goroutine calls it.
func (b *Batcher) notePending(pending []tokenbroker.AuditEvent) {
	var oldest time.Time
	for i := range pending {
		if t := began(&pending[i]); oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	if oldest.IsZero() {
		b.oldestPending.Store(0)
		return
	}
	b.oldestPending.Store(oldest.UnixNano())
}

// noteAppended records ev, just appended to pending, for [Batcher.Lag]
// without scanning pending again. Only the writer goroutine calls it.
func (b *Batcher) noteAppended(ev *tokenbroker.AuditEvent) {
	t := began(ev).UnixNano()
	if cur := b.oldestPending.Load(); cur == 0 || t < cur {
		b.oldestPending.Store(t)
	}
}

// began is when the events of row ev began: its time, or an aggregated
// row's first read.
func began(ev *tokenbroker.AuditEvent) time.Time {
	if ev.FirstAt.IsZero() || ev.Time.Before(ev.FirstAt) {
		return ev.Time
	}
	return ev.FirstAt
}

// Lag is how far behind the audit trail is at now: the age of the oldest
// event recorded and not yet written (held by the writer, or a token read
// counted into the current interval's row), 0 when everything recorded is
// written. Token reads lag by up to the flush interval by design; a lag
// that keeps growing means the store refuses the writes.
func (b *Batcher) Lag(now time.Time) time.Duration {
	var oldest time.Time
	if ns := b.oldestPending.Load(); ns != 0 {
		oldest = time.Unix(0, ns)
	}
	b.mu.Lock()
	for _, r := range b.reads {
		if oldest.IsZero() || r.FirstAt.Before(oldest) {
			oldest = r.FirstAt
		}
	}
	b.mu.Unlock()
	if oldest.IsZero() {
		return 0
	}
	return max(now.Sub(oldest), 0)
}

var lagDesc = prometheus.NewDesc("tokenbroker_audit_lag_seconds",
	"How far behind the audit trail is: the age of the oldest audit event recorded and not yet written (token reads are written once per flush interval).", nil, nil)
