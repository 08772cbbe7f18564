package web

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/returnurl"
)

// DefaultStateTTL is how long an OAuth2 state (and its PKCE verifier) waits
// for the provider's callback when [Config.StateTTL] is zero.
const DefaultStateTTL = 10 * time.Minute

// Config configures a [Handler].
type Config struct {
	// Store keeps connect sessions, pending authorizations and links.
	Store tokenbroker.Store
	// Providers are the configured providers.
	Providers tokenbroker.Providers
	// Auditor records link.create events; nil records nothing.
	Auditor tokenbroker.Auditor

	// BaseURL is the public URL of this server as browsers reach it, for
	// example "https://broker.example.com" (a path prefix is allowed). The
	// OAuth2 redirect URI is BaseURL + "/oauth/callback"; it must be
	// registered with every provider. The handler itself serves the paths
	// without the prefix: mount it behind http.StripPrefix if the prefix is
	// not stripped by a proxy.
	BaseURL string
	// ReturnURLAllowList lists where a connect session may send the browser
	// back to: absolute http(s) URLs without user info, query or fragment.
	// A return URL matches an entry with the same origin whose path is the
	// entry's path or lies under it. See internal/returnurl.
	ReturnURLAllowList []string

	// StateTTL bounds the time between "Connect" and the provider's
	// callback; 0 means [DefaultStateTTL].
	StateTTL time.Duration
	// SkipValidation stores a new link without asking the provider who the
	// token belongs to (Provider.Validate). By default the token is
	// validated and the account id and login are stored with the link.
	SkipValidation bool

	// CookieKey is the HMAC key (at least 32 bytes) that binds a browser to
	// the connect session it opened first, and derives CSRF tokens. Replicas
	// behind one load balancer must share it; nil draws a random key, which
	// is right for a single process (a restart then ends the flows in
	// progress, nothing else).
	CookieKey []byte
	// CookieSecure forces the Secure attribute on the binding cookie. It
	// is on anyway when BaseURL is https.
	CookieSecure bool

	// ExchangeTimeout bounds the code exchange, validation and storing of a
	// link after the callback; 0 means 30 seconds.
	ExchangeTimeout time.Duration

	// Logger receives operational logs (never a token, state, verifier or
	// session id); nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock for expiry times and audit events; nil means
	// time.Now.
	Now func() time.Time
	// Rand is the source of state ids and PKCE verifiers; nil means
	// crypto/rand.Reader. It need not be safe for concurrent use.
	Rand io.Reader
}

// Handler serves the browser side of the connect flow. It is an
// [http.Handler] safe for concurrent use; see the package documentation for
// its routes.
type Handler struct {
	store       tokenbroker.Store
	providers   tokenbroker.Providers
	auditor     tokenbroker.Auditor
	basePath    string // path prefix of BaseURL, without trailing slash
	redirectURI string
	allow       returnurl.AllowList
	stateTTL    time.Duration
	validate    bool
	secure      bool
	exchangeTTL time.Duration
	log         *slog.Logger
	now         func() time.Time

	// secrets keys the binding cookies and CSRF tokens, and draws the
	// states and PKCE verifiers.
	*secrets

	mux *http.ServeMux
}

// New returns a Handler for cfg. It fails with an [tokenbroker.EINVALID]
// error when a required field is missing or BaseURL or an allow-list entry
// is malformed.
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil || cfg.Providers == nil {
		return nil, tokenbroker.Errorf(tokenbroker.EINVALID, "web: Store and Providers are required")
	}
	base, err := parseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	h := &Handler{
		store:       cfg.Store,
		providers:   cfg.Providers,
		auditor:     cfg.Auditor,
		basePath:    strings.TrimRight(base.EscapedPath(), "/"),
		stateTTL:    cfg.StateTTL,
		validate:    !cfg.SkipValidation,
		secure:      cfg.CookieSecure || base.Scheme == "https",
		exchangeTTL: cfg.ExchangeTimeout,
		log:         cfg.Logger,
		now:         cfg.Now,
	}
	h.redirectURI = strings.TrimRight(base.String(), "/") + "/oauth/callback"
	if h.stateTTL <= 0 {
		h.stateTTL = DefaultStateTTL
	}
	if h.exchangeTTL <= 0 {
		h.exchangeTTL = 30 * time.Second
	}
	if h.auditor == nil {
		h.auditor = tokenbroker.AuditorFunc(func(tokenbroker.AuditEvent) {})
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.now == nil {
		h.now = time.Now
	}
	allow, err := returnurl.Parse(cfg.ReturnURLAllowList)
	if err != nil {
		return nil, tokenbroker.Errorf(tokenbroker.EINVALID, "web: %s", tokenbroker.ErrorMessage(err))
	}
	h.allow = allow
	if h.secrets, err = newSecrets(cfg.CookieKey, cfg.Rand); err != nil {
		return nil, err
	}

	h.mux = http.NewServeMux()
	h.mux.HandleFunc("GET /connect/{session}", h.serveConnect)
	h.mux.HandleFunc("POST /connect/{session}/start/{provider}", h.serveStart)
	h.mux.HandleFunc("GET /oauth/callback", h.serveCallback)
	// A known path with another method: 405 with Allow (RFC 9110 §15.5.6),
	// not the not-found page.
	h.mux.HandleFunc("/connect/{session}", methodNotAllowed(h, "GET, HEAD"))
	h.mux.HandleFunc("/connect/{session}/start/{provider}", methodNotAllowed(h, "POST"))
	h.mux.HandleFunc("/oauth/callback", methodNotAllowed(h, "GET, HEAD"))
	return h, nil
}

// methodNotAllowed answers 405 with an Allow header and an error page.
func methodNotAllowed(h *Handler, allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		h.renderError(w, r, pageError{Status: http.StatusMethodNotAllowed, Code: codeInvalidRequest,
			Title: "Method not allowed", Message: "This address answers " + allow + " only."})
	}
}

// RedirectURI is the OAuth2 redirect URI to register with every provider:
// BaseURL + "/oauth/callback".
func (h *Handler) RedirectURI() string { return h.redirectURI }

// ServeHTTP implements [http.Handler]. Every response carries the security
// headers; unknown paths get the friendly not-found page.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w.Header())
	if _, pattern := h.mux.Handler(r); pattern == "" {
		h.renderError(w, r, pageError{Status: http.StatusNotFound, Code: codeNotFound,
			Title: "Page not found", Message: "There is nothing at this address."})
		return
	}
	h.mux.ServeHTTP(w, r)
}
