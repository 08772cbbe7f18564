package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the API's Prometheus series. A nil *Metrics records
// nothing. No label ever holds a key, a token or a JWT.
type Metrics struct {
	authFailures *prometheus.CounterVec
}

// NewMetrics creates the series and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_auth_failures_total",
			Help: "Failed API authentications by reason: missing, malformed, unknown_key, wrong_secret, revoked_key, jwt_<reason> for a refused workload JWT.",
		}, []string{"reason"}),
	}
	// The API key reasons exist from the start, so an alert on a rate
	// sees a zero rather than no series.
	for _, r := range []string{authMissing, authMalformed, authUnknownKey, authWrongSecret, authRevokedKey} {
		m.authFailures.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.authFailures)
	}
	return m
}

func (m *Metrics) authFailed(reason string) {
	if m != nil {
		m.authFailures.WithLabelValues(reason).Inc()
	}
}

// Rate limit of the authentication failure log: at most authLogBurst lines
// per authLogWindow; the first line after a suppression says how many
// were left out. The counter counts every failure.
const (
	authLogBurst  = 20
	authLogWindow = time.Minute
)

// authFailed counts a failed authentication and logs it at warn (rate
// limited) with its reason, the key prefix or issuer the request named
// and the client address. It never logs the credential.
func (s *Server) authFailed(r *http.Request, f *authFailure) {
	s.metrics.authFailed(f.reason)
	ok, suppressed := s.authLog.allow()
	if !ok {
		return
	}
	attrs := []slog.Attr{
		slog.String("reason", f.reason),
		slog.String("client", r.RemoteAddr),
		slog.String("pattern", r.Pattern),
	}
	if f.keyPrefix != "" {
		attrs = append(attrs, slog.String("key_prefix", f.keyPrefix))
	}
	if f.issuer != "" {
		attrs = append(attrs, slog.String("issuer", f.issuer))
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed_before", suppressed))
	}
	s.log.LogAttrs(context.WithoutCancel(r.Context()), slog.LevelWarn, "authentication failed", attrs...)
}

// logLimiter lets at most burst events per window through and counts the
// rest. Its lock guards its counters only (no refresh invariant is
// involved).
type logLimiter struct {
	now    func() time.Time
	burst  int
	window time.Duration

	mu         sync.Mutex
	start      time.Time
	n          int
	suppressed int
}

func newLogLimiter(now func() time.Time, burst int, window time.Duration) *logLimiter {
	return &logLimiter{now: now, burst: burst, window: window}
}

// allow reports whether to log this event and, if so, how many events were
// suppressed since the last one logged.
func (l *logLimiter) allow() (bool, int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.start.IsZero() || now.Sub(l.start) >= l.window || now.Before(l.start) {
		l.start, l.n = now, 0
	}
	if l.n >= l.burst {
		l.suppressed++
		return false, 0
	}
	l.n++
	sup := l.suppressed
	l.suppressed = 0
	return true, sup
}
