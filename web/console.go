package web

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// Defaults of [ConsoleConfig].
const (
	DefaultConsoleIdle     = 30 * time.Minute
	DefaultConsoleLifetime = 8 * time.Hour
)

// ConsoleBackend is what the console does through the API's own code, so
// that a key is checked, minted and revoked, a link deleted and a connect
// link made exactly as the API does it. httpapi.Server implements it.
type ConsoleBackend interface {
	// AuthenticateKey returns the unrevoked key whose plaintext is
	// presented, or an error with [tokenbroker.EUNAUTHORIZED].
	AuthenticateKey(ctx context.Context, presented string) (*tokenbroker.APIKey, error)
	// CreateKey validates and stores a new key and returns its plaintext.
	CreateKey(ctx context.Context, name string, scopes, users, providers []string) (*tokenbroker.APIKey, string, error)
	// RevokeKey revokes a key, effective at once on this replica, and
	// returns it as it was.
	RevokeKey(ctx context.Context, id int64) (*tokenbroker.APIKey, error)
	// DeleteLinkRevoking revokes the grant at the provider (best effort)
	// and deletes the link, writing the audit event that event makes of
	// the revocation in the same transaction; revocation says what the
	// provider did, "" when nothing was done.
	DeleteLinkRevoking(ctx context.Context, userID, providerID string, event func(revocation string) tokenbroker.AuditEvent) (revocation string, err error)
	// CreateConnectURL creates a connect session for userID and providers
	// on behalf of k and returns its URL and expiry.
	CreateConnectURL(ctx context.Context, k *tokenbroker.APIKey, userID string, providers []string) (string, time.Time, error)
}

// ConsoleConfig configures a [Console].
type ConsoleConfig struct {
	// Store, Providers and Backend are required.
	Store     tokenbroker.Store
	Providers tokenbroker.Providers
	Backend   ConsoleBackend
	// Auditor records the console's actions; nil records nothing.
	Auditor tokenbroker.Auditor
	// Status, when set, adds what the store alone cannot tell to the
	// overview (provider health, refresher lag, webhook delivery); see
	// [RuntimeStatus]. Nil leaves those sections out.
	Status func(ctx context.Context) *RuntimeStatus

	// BaseURL is the public URL of this server, as for [Config].
	BaseURL string
	// CookieKey is the HMAC key (at least 32 bytes) of the CSRF tokens.
	// Replicas behind one load balancer must share it; nil draws one.
	CookieKey []byte
	// CookieSecure forces the Secure attribute on the session cookie; it
	// is on anyway when BaseURL is https.
	CookieSecure bool
	// IdleTimeout ends a session not used for this long (default
	// [DefaultConsoleIdle]); Lifetime ends any session this long after
	// sign-in (default [DefaultConsoleLifetime]).
	IdleTimeout time.Duration
	Lifetime    time.Duration
	// SignInLimiter decides whether a client may try another sign-in after
	// failures; nil means [NewSignInLimiter] with its defaults.
	SignInLimiter *SignInLimiter

	// Docs, when set, are the Markdown files the front door links to and
	// serves under /docs/.
	Docs fs.FS
	// Version is shown on the front door.
	Version string

	// Logger receives operational logs (never a key, session id or token).
	Logger *slog.Logger
	// Now is the clock for audit events and rate limits; nil is time.Now.
	Now func() time.Time
	// Rand is the source of session ids; nil is crypto/rand.Reader.
	Rand io.Reader
}

// Console serves the front door (/), the documentation (/docs/) and the
// admin console (/admin/...). It is an [http.Handler] safe for concurrent
// use; see docs/console.md for what it shows and does.
type Console struct {
	cfg      ConsoleConfig
	log      *slog.Logger
	now      func() time.Time
	basePath string
	secure   bool
	limiter  *SignInLimiter
	cop      *http.CrossOriginProtection

	// secrets keys the CSRF tokens and draws the session ids.
	*secrets

	mux *http.ServeMux
}

// NewConsole returns a Console for cfg, or an [tokenbroker.EINVALID]
// error when a required field is missing or malformed.
func NewConsole(cfg ConsoleConfig) (*Console, error) {
	if cfg.Store == nil || cfg.Providers == nil || cfg.Backend == nil {
		return nil, tokenbroker.Errorf(tokenbroker.EINVALID, "web: console needs Store, Providers and Backend")
	}
	base, err := parseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	c := &Console{
		cfg:      cfg,
		log:      cfg.Logger,
		now:      cfg.Now,
		basePath: strings.TrimRight(base.EscapedPath(), "/"),
		secure:   cfg.CookieSecure || base.Scheme == "https",
		limiter:  cfg.SignInLimiter,
		cop:      http.NewCrossOriginProtection(),
	}
	if c.cfg.Auditor == nil {
		c.cfg.Auditor = tokenbroker.AuditorFunc(func(tokenbroker.AuditEvent) {})
	}
	if c.cfg.IdleTimeout <= 0 {
		c.cfg.IdleTimeout = DefaultConsoleIdle
	}
	if c.cfg.Lifetime <= 0 {
		c.cfg.Lifetime = DefaultConsoleLifetime
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.log = c.log.With("component", "console")
	if c.now == nil {
		c.now = time.Now
	}
	if c.limiter == nil {
		c.limiter = NewSignInLimiter(SignInLimits{})
	}
	if c.secrets, err = newSecrets(cfg.CookieKey, cfg.Rand); err != nil {
		return nil, err
	}
	c.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.renderError(w, r, nil, http.StatusForbidden, codeCSRF, "Request refused",
			"This form was sent from another site. Open the console and try again.")
	}))
	c.routes()
	return c, nil
}

func (c *Console) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", c.serveHome)
	m.HandleFunc("GET /docs/{name}", c.serveDoc)
	m.HandleFunc("GET /admin", c.redirect("/admin/"))
	m.HandleFunc("GET /admin/{$}", c.authed(c.serveOverview))
	m.HandleFunc("GET /admin/sign-in", c.serveSignInForm)
	m.HandleFunc("POST /admin/sign-in", c.serveSignIn)
	m.HandleFunc("POST /admin/sign-out", c.authed(c.serveSignOut))
	m.HandleFunc("GET /admin/links", c.authed(c.serveLinks))
	m.HandleFunc("GET /admin/links/{user}/{provider}", c.authed(c.serveLink))
	m.HandleFunc("GET /admin/links/{user}/{provider}/reconnect", c.authed(c.serveReconnectConfirm))
	m.HandleFunc("POST /admin/links/{user}/{provider}/reconnect", c.authed(c.serveReconnect))
	m.HandleFunc("GET /admin/links/{user}/{provider}/delete", c.authed(c.serveDeleteConfirm))
	m.HandleFunc("POST /admin/links/{user}/{provider}/delete", c.authed(c.serveDelete))
	m.HandleFunc("GET /admin/audit", c.authed(c.unrestricted(c.serveAudit)))
	m.HandleFunc("GET /admin/audit/export", c.authed(c.unrestricted(c.serveAuditExport)))
	m.HandleFunc("GET /admin/keys", c.authed(c.unrestricted(c.serveKeys)))
	m.HandleFunc("POST /admin/keys", c.authed(c.unrestricted(c.serveCreateKey)))
	m.HandleFunc("GET /admin/keys/{id}/revoke", c.authed(c.unrestricted(c.serveRevokeConfirm)))
	m.HandleFunc("POST /admin/keys/{id}/revoke", c.authed(c.unrestricted(c.serveRevoke)))
	c.mux = m
}

// ServeHTTP implements [http.Handler]. Every response carries the
// security headers; a form sent from another origin is refused before any
// handler runs; unknown paths get the not-found page.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setPageHeaders(w.Header(), consoleCSP)
	if _, pattern := c.mux.Handler(r); pattern == "" {
		c.renderError(w, r, nil, http.StatusNotFound, codeNotFound, "Page not found", "There is nothing at this address.")
		return
	}
	c.cop.Handler(c.mux).ServeHTTP(w, r)
}

// path returns p under the base URL's path prefix, for links and redirects.
func (c *Console) path(p string) string { return c.basePath + p }

func (c *Console) redirect(to string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, c.path(to), http.StatusSeeOther)
	}
}

// audit records one console action by the session's key.
func (c *Console) audit(a *adminSession, action, userID, providerID string, err error, detail string) {
	c.cfg.Auditor.Record(c.event(a, action, userID, providerID, err, detail))
}

// event is the audit event of one console action by the session's key.
func (c *Console) event(a *adminSession, action, userID, providerID string, err error, detail string) tokenbroker.AuditEvent {
	outcome := "ok"
	if err != nil {
		outcome = tokenbroker.ErrorCode(err)
	}
	return tokenbroker.AuditEvent{
		Time:       c.now(),
		Actor:      ConsoleActor(a.key.Prefix),
		Action:     action,
		UserID:     userID,
		ProviderID: providerID,
		Outcome:    outcome,
		Detail:     tokenbroker.Truncate(detail, 500),
	}
}

// ConsoleActor is the audit actor of a console action by the key with
// prefix: "console:<prefix>" (the API's own actions are "key:<prefix>").
func ConsoleActor(prefix string) string { return "console:" + prefix }
