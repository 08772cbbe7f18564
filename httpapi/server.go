package httpapi

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apiv1"
)

// Config configures a [Server]. Store, Tokens and Providers are required.
type Config struct {
	Store     tokenbroker.Store
	Tokens    tokenbroker.TokenService
	Providers tokenbroker.Providers
	// Auditor records audit events; nil discards them. Use an
	// audit.Batcher so the hot path never writes synchronously.
	Auditor tokenbroker.Auditor

	// BaseURL is the server's public URL, without a trailing slash. Connect
	// URLs are BaseURL + "/connect/" + session id.
	BaseURL string
	// ConnectSessionTTL is how long a connect session stays usable
	// (default 15 minutes).
	ConnectSessionTTL time.Duration
	// ReturnURLAllowList lists where a connect session may send the
	// browser back: origins ("https://app.example.com") or URL prefixes
	// ("https://app.example.com/settings/"). See internal/returnurl.
	ReturnURLAllowList []string
	// APIKeyCacheTTL is how long a verified key is trusted without reading
	// the store again (default [DefaultAPIKeyCacheTTL]); it bounds how long
	// a revocation made elsewhere takes to be effective here.
	APIKeyCacheTTL time.Duration
	// ProviderTimeout bounds calls to providers made by the API itself
	// (validate, revoke, device flow); default 15s.
	ProviderTimeout time.Duration

	// Workloads verifies workload JWTs presented instead of an API key
	// (package identity's Verifier); nil: only API keys are accepted and
	// POST /oauth2/token refuses every exchange.
	Workloads WorkloadVerifier
	// Metrics records failed authentications; nil records nothing.
	Metrics *Metrics

	// Logger receives one line per request and every internal error.
	Logger *slog.Logger
	// RequestLogLevel is the level of the per-request line of requests
	// answered below 500 (default Info); 5xx answers are logged at Warn.
	// A busy deployment may set Debug to keep the hot path's lines out of
	// the log without losing the failures.
	RequestLogLevel slog.Leveler
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Rand is the source of ids and keys (default crypto/rand.Reader). It
	// must be safe for concurrent use.
	Rand io.Reader
}

// Server is the REST API under /api/v1, plus /healthz and /readyz. It is an
// [http.Handler]; mount it at the root of the public URL.
type Server struct {
	cfg       Config
	store     tokenbroker.Store
	tokens    tokenbroker.TokenService
	providers tokenbroker.Providers
	auditor   tokenbroker.Auditor
	log       *slog.Logger
	now       func() time.Time
	rand      io.Reader
	keys      *keyCache
	workloads WorkloadVerifier
	metrics   *Metrics
	authLog   *logLimiter
	usage     keyUsage
	replays   *replayLog
	mux       *http.ServeMux
	// token is the token endpoint's handler, which ServeHTTP calls
	// without the mux for the plain paths that are most of the traffic.
	token  http.HandlerFunc
	reauth reauthSessions
	// operations lists the "METHOD /path" of every /api/v1 route.
	operations []string
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	if cfg.ConnectSessionTTL <= 0 {
		cfg.ConnectSessionTTL = 15 * time.Minute
	}
	if cfg.APIKeyCacheTTL <= 0 {
		cfg.APIKeyCacheTTL = DefaultAPIKeyCacheTTL
	}
	if cfg.ProviderTimeout <= 0 {
		cfg.ProviderTimeout = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RequestLogLevel == nil {
		cfg.RequestLogLevel = slog.LevelInfo
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Auditor == nil {
		cfg.Auditor = tokenbroker.AuditorFunc(func(tokenbroker.AuditEvent) {})
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	s := &Server{
		cfg:       cfg,
		store:     cfg.Store,
		tokens:    cfg.Tokens,
		providers: cfg.Providers,
		auditor:   cfg.Auditor,
		log:       cfg.Logger.With("component", "httpapi"),
		now:       cfg.Now,
		rand:      cfg.Rand,
		keys:      newKeyCache(cfg.Store, cfg.APIKeyCacheTTL, cfg.Now),
		workloads: cfg.Workloads,
		metrics:   cfg.Metrics,
		authLog:   newLogLimiter(cfg.Now, authLogBurst, authLogWindow),
		replays:   newReplayLog(cfg.Now),
		mux:       http.NewServeMux(),
	}
	s.routes()
	return s
}

// handlerFunc is an authenticated handler: k is the verified caller (an
// API key or a workload, with the same kind of policy). A returned error
// is sent as a problem document.
type handlerFunc func(w http.ResponseWriter, r *http.Request, k *caller) error

func (s *Server) routes() {
	methods := map[string][]string{}
	handle := func(method, path string, h http.HandlerFunc) {
		s.mux.HandleFunc(method+" "+path, h)
		methods[path] = append(methods[path], method)
		if strings.HasPrefix(path, "/api/v1/") {
			s.operations = append(s.operations, method+" "+path)
		}
	}
	// authed adds an operation of /api/v1; query lists the query
	// parameters it takes (any other, or one given twice, is refused).
	// Describe a new operation in apiv1/openapi.json too, and give it a
	// case in conformance_test.go, which fails until every documented
	// operation has one.
	authed := func(method, path string, fn handlerFunc, query ...string) {
		handle(method, path, s.authed(fn, query))
	}

	handle("GET", "/healthz", s.healthz)
	handle("GET", "/readyz", s.readyz)
	handle("GET", "/api/v1/openapi.json", s.openAPI)

	s.token = s.authed(s.getToken, []string{"min_valid"})
	handle("GET", tokenPattern, s.token)
	authed("GET", "/api/v1/users/{user_id}/links", s.listLinks)
	authed("GET", "/api/v1/users/{user_id}/links/{provider_id}", s.getLink)
	authed("PUT", "/api/v1/users/{user_id}/links/{provider_id}", s.putLink)
	authed("DELETE", "/api/v1/users/{user_id}/links/{provider_id}", s.deleteLink)
	authed("POST", "/api/v1/users/{user_id}/links/{provider_id}/device", s.startDevice)
	authed("GET", "/api/v1/users/{user_id}/links/{provider_id}/device/{id}", s.pollDevice)
	authed("GET", "/api/v1/providers", s.listProviders)
	authed("POST", "/api/v1/connect-sessions", s.createConnectSession)
	authed("POST", "/api/v1/api-keys", s.createAPIKey)
	authed("GET", "/api/v1/api-keys", s.listAPIKeys)
	authed("DELETE", "/api/v1/api-keys/{id}", s.revokeAPIKey, "allow_self")
	authed("GET", "/api/v1/audit", s.listAudit, "user", "provider", "action", "actor", "since", "until", "before_id", "limit")
	authed("GET", "/api/v1/webhooks/dead-letters", s.listDeadLetters, "endpoint", "before_id", "limit")
	authed("POST", "/api/v1/webhooks/dead-letters/{id}/retry", s.retryDeadLetter)

	handle("POST", "/oauth2/token", s.tokenExchange)

	// A known path with another method: 405 with Allow (RFC 9110 §15.5.6).
	for path, ms := range methods {
		allow := strings.Join(ms, ", ")
		if slices.Contains(ms, "GET") {
			allow += ", HEAD"
		}
		s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			s.writeError(w, r, tokenbroker.Errorf(codeMethodNotAllowed, "method %s not allowed; allowed: %s", r.Method, allow))
		})
	}
	// Everything else (mounted at the root, behind the web pages' more
	// specific routes): a problem document, not net/http's text 404.
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, tokenbroker.Errorf(tokenbroker.ENOTFOUND, "no such endpoint"))
	})
}

// authed wraps fn with API-key authentication and refuses query
// parameters other than query.
func (s *Server) authed(fn handlerFunc, query []string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		k, err := s.authenticate(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if rec, ok := w.(*recorder); ok {
			rec.keyPrefix = k.Prefix
			if k.workload != nil {
				rec.workload = k.workload.TrustID
			}
		}
		if r.URL.RawQuery != "" {
			if err := checkQuery(r.URL.Query(), query...); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		if err := fn(w, r, k); err != nil {
			s.writeError(w, r, err)
		}
	}
}

// ServeHTTP serves the API. Every request is logged once with its method,
// route pattern (never the raw path or query, which can carry ids and
// secrets), status, duration and the caller's key prefix. A panic becomes a
// 500 problem; its value is not logged, only its type and the stack,
// because a value could hold a secret.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now() // a measurement, not a decision: the real clock
	rec := &recorder{ResponseWriter: w}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.LogAttrs(r.Context(), slog.LevelError, "panic serving request",
				slog.String("pattern", r.Pattern),
				slog.String("panic_type", fmt.Sprintf("%T", v)),
				slog.String("stack", string(debug.Stack())))
			if !rec.wroteHeader {
				s.writeProblem(rec, s.problemFor(fmt.Errorf("panic")))
			}
		}
		s.logRequest(r, rec, start)
	}()
	if r.Method == http.MethodGet && r.URL.RawPath == "" {
		if user, provider, ok := tokenPath(r.URL.Path); ok {
			// What the mux would do for this path, without its matching
			// and the allocations of its path values.
			r.Pattern = "GET " + tokenPattern
			rec.userID, rec.providerID = user, provider
			s.token(rec, r)
			return
		}
	}
	s.mux.ServeHTTP(rec, r)
}

// tokenPattern is the token endpoint's route.
const tokenPattern = "/api/v1/users/{user_id}/providers/{provider_id}/token"

// tokenPath reports whether path is the token endpoint's with plain,
// non-empty user and provider segments (no "." or "..", which the mux
// would clean away first), and returns them. Any other path, and any path
// that needed escaping (the caller checks URL.RawPath), goes through the
// mux.
func tokenPath(path string) (user, provider string, ok bool) {
	const (
		prefix = "/api/v1/users/"
		middle = "/providers/"
		suffix = "/token"
	)
	if len(path) <= len(prefix)+len(middle)+len(suffix) || path[:len(prefix)] != prefix || path[len(path)-len(suffix):] != suffix {
		return "", "", false
	}
	rest := path[len(prefix) : len(path)-len(suffix)]
	i := strings.IndexByte(rest, '/')
	if i <= 0 || !strings.HasPrefix(rest[i:], middle) {
		return "", "", false
	}
	user, provider = rest[:i], rest[i+len(middle):]
	if provider == "" || strings.IndexByte(provider, '/') >= 0 || dotSegment(user) || dotSegment(provider) {
		return "", "", false
	}
	return user, provider, true
}

func dotSegment(s string) bool { return s == "." || s == ".." }

func (s *Server) logRequest(r *http.Request, rec *recorder, start time.Time) {
	level := s.cfg.RequestLogLevel.Level()
	if rec.status >= 500 {
		level = slog.LevelWarn
	}
	ctx := r.Context()
	if !s.log.Enabled(ctx, level) {
		return
	}
	pattern := r.Pattern
	if pattern == "" {
		pattern = "unmatched"
	}
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("pattern", pattern),
		slog.Int("status", status),
		slog.Duration("duration", time.Since(start)),
		slog.String("key_prefix", rec.keyPrefix),
	}
	if rec.workload != "" {
		attrs = append(attrs, slog.String("workload", rec.workload))
	}
	s.log.LogAttrs(ctx, level, "request", attrs...)
}

// recorder remembers the status and the caller's key prefix (or workload
// trust entry) for the request log.
type recorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	keyPrefix   string
	workload    string
	// userID and providerID are the token path's ids when ServeHTTP
	// routed it itself (see tokenPath).
	userID, providerID string
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status = code
		r.wroteHeader = true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// pathIDs validates the {user_id} and {provider_id} path parameters that
// are present in r's pattern.
func pathIDs(r *http.Request) (userID, providerID string, err error) {
	userID = r.PathValue("user_id")
	if err := tokenbroker.ValidateUserID(userID); err != nil {
		return "", "", err
	}
	if strings.Contains(r.Pattern, "{provider_id}") {
		providerID = r.PathValue("provider_id")
		if err := tokenbroker.ValidateProviderID(providerID); err != nil {
			return "", "", err
		}
	}
	return userID, providerID, nil
}

// authorizedIDs returns the user and provider ids of r's path once k may
// act with scope on them (see [authorize]).
func authorizedIDs(r *http.Request, k *caller, scope string) (userID, providerID string, err error) {
	userID, providerID, err = pathIDs(r)
	if err != nil {
		return "", "", err
	}
	if err := authorize(k, scope, userID, providerID); err != nil {
		return "", "", err
	}
	return userID, providerID, nil
}

// event is the audit event of a change made by caller k, written with the
// change (its time is the database's). A workload's events also name the
// JWT it presented (jti or fingerprint) and whether an audited request
// presented it before (a replay, allowed within its lifetime).
func (s *Server) event(k *caller, action, userID, providerID, detail string) tokenbroker.AuditEvent {
	actor := "system"
	if k != nil {
		actor = k.actor()
		if w := k.workload; w != nil {
			jwt := "jwt=" + w.TokenID
			if s.replays.seen(w.Issuer+"|"+w.TokenID, w.Expiry.Add(time.Minute)) {
				jwt += " replay"
			}
			detail = strings.TrimSpace(jwt + " " + detail)
		}
	}
	return tokenbroker.AuditEvent{Actor: actor, Action: action, UserID: userID, ProviderID: providerID,
		Outcome: "ok", Detail: tokenbroker.Truncate(detail, 500)}
}

// audit records an event that comes with no change, or whose change
// failed, through the batching auditor.
func (s *Server) audit(k *caller, action, userID, providerID string, err error, detail string) {
	ev := s.event(k, action, userID, providerID, detail)
	if err != nil {
		ev.Outcome = tokenbroker.ErrorCode(err)
	}
	ev.Time = s.now()
	s.auditor.Record(ev)
}

// providerCtx bounds a provider call made by the API.
func (s *Server) providerCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.ProviderTimeout)
}

// openAPI serves the OpenAPI 3.1 description of /api/v1 (apiv1.OpenAPI),
// to anyone: it holds nothing secret.
func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(apiv1.OpenAPI)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "not ready: database", slog.String("err", err.Error()))
		s.writeProblem(w, notReady("the database does not answer"))
		return
	}
	cur, latest, err := s.store.SchemaVersion(ctx)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "not ready: schema version", slog.String("err", err.Error()))
		s.writeProblem(w, notReady("the schema version cannot be read"))
		return
	}
	if cur != latest {
		s.writeProblem(w, notReady(fmt.Sprintf("database schema at version %d, this binary needs %d: run tokenbroker migrate", cur, latest)))
		return
	}
	ready := map[string]any{"status": "ready", "schema_version": cur}
	// Providers in trouble are reported, not made a reason to take the
	// replica out of service: every replica shares their state.
	if hs, err := s.store.ListProviderHealth(ctx); err == nil {
		var troubled []ProviderHealth
		for _, h := range hs {
			if h.Misconfigured != "" || h.Open() {
				troubled = append(troubled, providerHealth(h))
			}
		}
		if len(troubled) > 0 {
			ready["providers"] = troubled
		}
	}
	writeJSON(w, http.StatusOK, ready)
}

// ProviderHealth is a provider in trouble as /readyz reports it.
type ProviderHealth struct {
	ID string `json:"id"`
	// State is "misconfigured" (it refuses this service's client
	// credentials) or "circuit_open" (it failed repeatedly).
	State  string     `json:"state"`
	Detail string     `json:"detail,omitempty"`
	Since  *time.Time `json:"since,omitempty"`
	// Until is when the next probe may go out.
	Until *time.Time `json:"until,omitempty"`
}

func providerHealth(h *tokenbroker.ProviderHealth) ProviderHealth {
	out := ProviderHealth{ID: h.ProviderID, State: "circuit_open",
		Detail: fmt.Sprintf("%d consecutive failed refresh calls", h.Failures)}
	if h.Misconfigured != "" {
		out.State, out.Detail = "misconfigured", h.Misconfigured
		since := h.MisconfiguredSince
		out.Since = &since
	}
	if !h.OpenUntil.IsZero() {
		until := h.OpenUntil
		out.Until = &until
	}
	return out
}

func notReady(detail string) Problem {
	return Problem{
		Type:   ProblemTypePrefix + "not_ready",
		Title:  http.StatusText(http.StatusServiceUnavailable),
		Status: http.StatusServiceUnavailable,
		Detail: detail,
		Code:   "not_ready",
	}
}
