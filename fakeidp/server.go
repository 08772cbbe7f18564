package fakeidp

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Endpoint names, the keys of [Stats.Requests].
const (
	epAuthorize    = "authorize"
	epToken        = "token"
	epDeviceAuth   = "device_authorization"
	epDeviceVerify = "device_verification"
	epUserinfo     = "userinfo"
	epRevoke       = "revoke"
	epDiscovery    = "discovery"
	epJWKS         = "jwks"
)

// Paths of the endpoints.
const (
	PathAuthorize     = "/authorize"
	PathToken         = "/token"
	PathDeviceCode    = "/device/code"
	PathDevice        = "/device"
	PathUserinfo      = "/userinfo"
	PathGitHubUser    = "/user"
	PathRevoke        = "/revoke"
	PathDiscovery     = "/.well-known/openid-configuration"
	PathOAuthMetadata = "/.well-known/oauth-authorization-server"
	PathJWKS          = "/jwks"
	PathStats         = "/stats"
	PathStatsReset    = "/stats/reset"
	PathAdminFaults   = "/admin/faults"
	PathAdminIssue    = "/admin/issue"
	PathAdminRevoke   = "/admin/revoke"
	// PathAdminWorkloadToken mints workload JWTs; PathAdminRotateKey
	// rotates the signing key (both need OIDC on).
	PathAdminWorkloadToken = "/admin/workload-token"
	PathAdminRotateKey     = "/admin/rotate-key"
)

// Server is a fake OAuth2 authorization server. It is an [http.Handler];
// [Start] also runs it on a loopback listener. All methods are safe for
// concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	handler http.Handler
	oidc    *oidcSigner // nil unless cfg.OIDC

	randMu sync.Mutex
	rand   io.Reader

	// mu guards all token state and counters below. Every read-check-write
	// of a grant (using up a code, a device code or a refresh token) happens
	// in one critical section, so two concurrent refreshes with the same
	// token are seen as exactly one rotation plus one reuse: that is the
	// observation the tests of docs/design.md invariants I1 and I2 rely on.
	mu      sync.Mutex
	faults  Faults
	users   []User
	fams    map[string]*family
	access  map[string]*accessToken
	issued  []string // with Config.RecordIssued
	refresh map[string]*refreshToken
	codes   map[string]*authCode
	devices map[string]*deviceGrant // by device code
	ucodes  map[string]*deviceGrant // by normalized user code
	nfam    int
	// tokenRequests counts token endpoint requests as they arrive (before
	// any injected latency); it orders a refresh against the rotation of
	// the token it presents (Config.OverlappingRefresh).
	tokenRequests int64
	stats         counters
	// nextSweep is the number of tokens held at which the next sweep
	// of expired state runs (see maybeSweepLocked).
	nextSweep int

	closing   chan struct{} // closed by Close: ends hangs and latency waits
	closeOnce sync.Once
	baseURL   string // listener URL for Start; fixed before serving
	httpSrv   *http.Server
	serveErr  chan error
	// loginURL, loginSrv and loginErr serve the login page on a second
	// origin (Config.SeparateLoginOrigin); loginURL is fixed before serving.
	loginURL string
	loginSrv *http.Server
	loginErr chan error
}

// New returns a server for cfg that is not listening: mount it as an
// [http.Handler] (for example in an httptest.Server). Close still ends
// hanging requests.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		now:       cfg.Now,
		rand:      cfg.Rand,
		faults:    cfg.Faults,
		users:     cfg.Users,
		fams:      map[string]*family{},
		access:    map[string]*accessToken{},
		refresh:   map[string]*refreshToken{},
		codes:     map[string]*authCode{},
		devices:   map[string]*deviceGrant{},
		ucodes:    map[string]*deviceGrant{},
		closing:   make(chan struct{}),
		nextSweep: minSweep,
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	s.stats.reset()
	if cfg.OIDC {
		if s.oidc, err = newOIDCSigner(cfg.SigningKey, s.rand); err != nil {
			return nil, err
		}
	}
	s.handler = s.routes()
	return s, nil
}

// Start returns a server listening on 127.0.0.1 on a free port, like
// httptest.NewServer. Close it when done.
func Start(cfg Config) (*Server, error) { return StartAt("127.0.0.1:0", cfg) }

// StartAt returns a server listening on addr (host:port; port 0 picks a
// free one). Close it when done.
func StartAt(addr string, cfg Config) (*Server, error) {
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("fakeidp: listen: %w", err)
	}
	s.baseURL = "http://" + ln.Addr().String()
	s.httpSrv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if cfg.SeparateLoginOrigin {
		lln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("fakeidp: listen for the login page: %w", err)
		}
		s.loginURL = "http://" + lln.Addr().String()
		s.loginSrv = &http.Server{
			Handler:           http.HandlerFunc(s.handleSeparateLogin),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
		s.loginErr = make(chan error, 1)
		go func() { s.loginErr <- s.loginSrv.Serve(lln) }()
	}
	s.serveErr = make(chan error, 1)
	go func() { s.serveErr <- s.httpSrv.Serve(ln) }()
	return s, nil
}

// LoginURL is the origin of the login page with
// [Config.SeparateLoginOrigin] on a started server, else "".
func (s *Server) LoginURL() string { return s.loginURL }

// URL is the base URL of the server: [Config.BaseURL] if set, else the
// listener's URL for a started server, else "" (endpoint URLs are then
// relative paths).
func (s *Server) URL() string {
	if s.cfg.BaseURL != "" {
		return s.cfg.BaseURL
	}
	return s.baseURL
}

// Close stops the listener (if any), ends hanging and delayed requests,
// waits for the handlers of a started server to return and closes its
// connections. It is safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		if s.httpSrv == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.httpSrv.Shutdown(ctx); err != nil {
			s.httpSrv.Close()
		}
		if err := <-s.serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Warn("fakeidp: serve ended", "err", err)
		}
		if s.loginSrv != nil {
			if err := s.loginSrv.Shutdown(ctx); err != nil {
				s.loginSrv.Close()
			}
			<-s.loginErr
		}
	})
}

// Endpoints are the absolute URLs of a server's endpoints.
type Endpoints struct {
	Issuer              string `json:"issuer"`
	Authorize           string `json:"authorization_endpoint"`
	Token               string `json:"token_endpoint"`
	DeviceAuthorization string `json:"device_authorization_endpoint"`
	DeviceVerification  string `json:"device_verification"`
	Userinfo            string `json:"userinfo_endpoint"`
	Revoke              string `json:"revocation_endpoint"`
	Discovery           string `json:"discovery"`
	JWKS                string `json:"jwks_uri"`
	Stats               string `json:"stats"`
	AdminFaults         string `json:"admin_faults"`
}

// OAuth2 returns the endpoint for a golang.org/x/oauth2 Config, with
// automatic detection of the client authentication style.
func (e Endpoints) OAuth2() oauth2.Endpoint {
	return oauth2.Endpoint{AuthURL: e.Authorize, TokenURL: e.Token, DeviceAuthURL: e.DeviceAuthorization}
}

// Endpoints returns the server's endpoint URLs, relative to [Server.URL].
func (s *Server) Endpoints() Endpoints { return endpointsAt(s.URL()) }

func endpointsAt(base string) Endpoints {
	return Endpoints{
		Issuer:              base,
		Authorize:           base + PathAuthorize,
		Token:               base + PathToken,
		DeviceAuthorization: base + PathDeviceCode,
		DeviceVerification:  base + PathDevice,
		Userinfo:            base + PathUserinfo,
		Revoke:              base + PathRevoke,
		Discovery:           base + PathDiscovery,
		JWKS:                base + PathJWKS,
		Stats:               base + PathStats,
		AdminFaults:         base + PathAdminFaults,
	}
}

// OAuth2Config returns a golang.org/x/oauth2 Config for the server's
// client.
func (s *Server) OAuth2Config(redirectURL string, scopes ...string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     s.cfg.ClientID,
		ClientSecret: s.cfg.ClientSecret,
		Endpoint:     s.Endpoints().OAuth2(),
		RedirectURL:  redirectURL,
		Scopes:       scopes,
	}
}

// Config returns the effective configuration, defaults filled in, with the
// faults currently in force.
func (s *Server) Config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cfg
	c.Faults = s.faults
	c.Users = append([]User(nil), s.users...)
	return c
}

// Faults returns the faults currently in force, with the "next N"
// counters as far as they have counted down.
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// SetFaults replaces the injected faults. It panics on invalid faults
// (use [Faults.Validate] first for untrusted input); requests already
// delayed or hanging keep their fault.
func (s *Server) SetFaults(f Faults) {
	if err := f.Validate(); err != nil {
		panic(err)
	}
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
}

// ServeHTTP implements [http.Handler].
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}

// routes builds the request multiplexer.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	ep := func(name string, h http.HandlerFunc) http.Handler { return s.endpoint(name, h) }
	// Each endpoint is also served at the paths GitHub (Enterprise Server:
	// /login/..., /api/v3), GitLab (/oauth/..., /api/v4) and Gitea
	// (/api/v1) use, so that a provider of those kinds with its base URL
	// set to the server works unchanged.
	handle := func(methods, name string, h http.HandlerFunc, paths ...string) {
		for _, m := range strings.Fields(methods) {
			for _, p := range paths {
				mux.Handle(m+" "+p, ep(name, h))
			}
		}
	}
	handle("GET", epAuthorize, s.handleAuthorize, PathAuthorize, "/login/oauth/authorize", "/oauth/authorize")
	handle("POST", epAuthorize, s.handleAuthorizeDecision, PathAuthorize, "/login/oauth/authorize", "/oauth/authorize")
	handle("POST", epToken, s.handleToken, PathToken, "/login/oauth/access_token", "/oauth/token")
	handle("POST", epDeviceAuth, s.handleDeviceAuthorization, PathDeviceCode, "/login/device/code", "/oauth/authorize_device")
	handle("GET", epDeviceVerify, s.handleDevicePage, PathDevice, "/login/device")
	handle("POST", epDeviceVerify, s.handleDeviceDecision, PathDevice, "/login/device")
	handle("GET POST", epUserinfo, s.handleUserinfo, PathUserinfo)
	handle("GET", epUserinfo, s.handleUserinfo, PathGitHubUser, "/api/v3/user", "/api/v4/user", "/api/v1/user")
	handle("POST", epRevoke, s.handleRevoke, PathRevoke, "/oauth/revoke")
	handle("DELETE", epRevoke, s.handleGitHubRevokeGrant, "/applications/{client_id}/grant", "/api/v3/applications/{client_id}/grant")
	handle("GET", epDiscovery, s.handleDiscovery, PathDiscovery, PathOAuthMetadata)
	handle("GET", epJWKS, s.handleJWKS, PathJWKS)
	mux.HandleFunc("GET "+PathStats, s.handleStats)
	mux.HandleFunc("POST "+PathStatsReset, s.handleStatsReset)
	mux.HandleFunc("GET "+PathAdminFaults, s.handleGetFaults)
	mux.HandleFunc("PUT "+PathAdminFaults, s.handlePutFaults)
	mux.HandleFunc("POST "+PathAdminIssue, s.handleAdminIssue)
	mux.HandleFunc("POST "+PathAdminRevoke, s.handleAdminRevoke)
	mux.HandleFunc("POST "+PathAdminWorkloadToken, s.handleAdminWorkloadToken)
	mux.HandleFunc("POST "+PathAdminRotateKey, s.handleAdminRotateKey)
	mux.HandleFunc("GET /{$}", s.handleIndex)
	return mux
}

// endpoint wraps a protocol endpoint: it counts the request, logs it and
// injects the configured latency. Error faults are decided by the handlers
// themselves, which know the grant type.
func (s *Server) endpoint(name string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.stats.Requests[name]++
		if name == epToken {
			// Numbered on arrival, before the latency: see tokenRequests.
			s.tokenRequests++
			r = r.WithContext(context.WithValue(r.Context(), arrivalKey{}, s.tokenRequests))
		}
		d := s.faults.delay(s.drawLocked)
		s.mu.Unlock()
		if s.cfg.OnRequest != nil {
			s.cfg.OnRequest(name)
		}
		if d > 0 {
			s.mu.Lock()
			s.stats.Faults["latency"]++
			s.mu.Unlock()
			if !s.wait(r.Context(), d) {
				abort()
			}
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h(sw, r)
		s.log.Debug("fakeidp request", "endpoint", name, "method", r.Method, "status", sw.status)
	})
}

// arrivalKey is the context key of a token request's arrival number.
type arrivalKey struct{}

// statusWriter remembers the status for the request log. It passes
// Hijacker through, which the consume-then-drop fault needs.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// wait blocks for d, until ctx is done or the server closes; it reports
// whether the full time passed.
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-s.closing:
	}
	return false
}

// hang blocks until the client gives up or the server closes, then
// aborts the response so that nothing is sent.
func (s *Server) hang(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-s.closing:
	}
	abort()
}

// abort ends the handler without a response: net/http closes the
// connection (HTTP/1) or resets the stream (HTTP/2) and logs nothing.
func abort() { panic(http.ErrAbortHandler) }

// applyPreFault decides and applies the pre-processing fault for a
// request to endpoint with grant type grant. It reports whether the
// request was answered (or aborted) by a fault.
func (s *Server) applyPreFault(w http.ResponseWriter, r *http.Request, endpoint, grant string) bool {
	s.mu.Lock()
	f := noFault
	if s.faults.targets(endpoint, grant) {
		f = s.faults.decidePre(s.drawLocked)
	}
	retryAfter := s.faults.retryAfterSeconds()
	retryAfter503 := s.faults.RetryAfter > 0
	if f != noFault {
		s.stats.Faults[f.String()]++
	}
	s.mu.Unlock()
	if f != noFault {
		s.log.Debug("fakeidp: injecting fault", "endpoint", endpoint, "grant_type", grant, "fault", f.String())
	}
	switch f {
	case noFault:
		return false
	case faultHang:
		s.hang(r.Context())
	case fault429:
		w.Header().Set("Retry-After", fmt.Sprint(retryAfter))
		writeJSON(w, http.StatusTooManyRequests, map[string]string{
			"error": "rate_limited", "error_description": "Too many requests; retry later."})
	case fault500:
		writeJSON(w, http.StatusInternalServerError, map[string]string{
			"error": "server_error", "error_description": "Injected internal server error."})
	case fault502:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, "<html><body><h1>502 Bad Gateway</h1></body></html>\n")
	case fault503:
		if retryAfter503 {
			w.Header().Set("Retry-After", fmt.Sprint(retryAfter))
		}
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{
			"error": "temporarily_unavailable", "error_description": "Injected unavailability."})
	}
	return true
}

// drawLocked returns a uniform float64 in [0, 1) from the injected
// randomness. A failing reader counts as 0.999..., which injects no fault
// with probabilities below 1.
func (s *Server) drawLocked() float64 {
	var b [8]byte
	if err := s.readRand(b[:]); err != nil {
		return 1 - 1.0/(1<<53)
	}
	return float64From(b)
}

// readRand fills b from the injected randomness.
func (s *Server) readRand(b []byte) error {
	s.randMu.Lock()
	defer s.randMu.Unlock()
	_, err := io.ReadFull(s.rand, b)
	return err
}

// newSecret returns prefix followed by 192 random bits, base64url.
func (s *Server) newSecret(prefix string) (string, error) {
	var b [24]byte
	if err := s.readRand(b[:]); err != nil {
		return "", fmt.Errorf("fakeidp: reading randomness: %w", err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// base returns the base URL for links in an answer to r.
func (s *Server) base(r *http.Request) string {
	if u := s.URL(); u != "" {
		return u
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// userLocked finds a user by ID or login.
func (s *Server) userLocked(key string) (User, bool) {
	if u := findUser(s.users, key); u != nil {
		return *u, true
	}
	return User{}, false
}

// userOrCreateLocked finds a user by ID or login, or creates one with that
// login (and a fresh numeric ID) for names typed on the login pages.
func (s *Server) userOrCreateLocked(login string) User {
	if u, ok := s.userLocked(login); ok {
		return u
	}
	u := User{ID: fmt.Sprint(2000 + len(s.users)), Login: login, Email: login + "@example.com"}
	for findUser(s.users, u.ID) != nil {
		u.ID += "0"
	}
	s.users = append(s.users, u)
	return u
}

// hasScope reports whether the space-separated scope list has scope.
func hasScope(scopes, scope string) bool {
	for _, s := range strings.Fields(scopes) {
		if s == scope {
			return true
		}
	}
	return false
}
