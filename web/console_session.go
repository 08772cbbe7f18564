package web

import (
	"crypto/hmac"
	"encoding/base64"
	"math"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tokenbroker/tokenbroker"
)

// The console's session: a random id in a cookie (HttpOnly, SameSite=Strict,
// Secure over TLS, scoped to /admin), whose SHA-256 the store keeps with
// the API key that signed in, an idle and an absolute expiry judged on the
// database's clock. Every request reads it back with its key, so a revoked
// key or a key that lost the admin scope ends its sessions at once, on
// every replica. Forms carry a CSRF token, an HMAC of the session id, and
// a form sent from another origin is refused anyway (Sec-Fetch-Site /
// Origin, http.CrossOriginProtection).

const (
	sessionCookie = "tb_admin"
	signInCookie  = "tb_admin_signin"
	csrfSession   = "tokenbroker/web console csrf v1\x00"
	csrfSignIn    = "tokenbroker/web console sign-in csrf v1\x00"
)

// adminSession is the signed-in caller of a console request.
type adminSession struct {
	sess *tokenbroker.AdminSession
	key  *tokenbroker.APIKey
	csrf string
}

// restricted reports whether the key is limited to some users or
// providers: it then sees only those links, and neither the audit log nor
// the API keys (as in the API).
func (a *adminSession) restricted() bool { return len(a.key.Users) > 0 || len(a.key.Providers) > 0 }

func (a *adminSession) scope() tokenbroker.LinkScope { return tokenbroker.ScopeOf(a.key) }

// consoleHandler is a handler for a signed-in caller.
type consoleHandler func(w http.ResponseWriter, r *http.Request, a *adminSession)

// authed wraps fn with the session check: no live session sends the
// browser to the sign-in page; a POST without the session's CSRF token is
// refused.
func (c *Console) authed(fn consoleHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a := c.session(w, r)
		if a == nil {
			http.Redirect(w, r, c.path("/admin/sign-in"), http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			if !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(a.csrf)) {
				c.renderError(w, r, a, http.StatusForbidden, codeCSRF, "Request refused",
					"This form has expired or did not come from this console. Go back, reload the page and try again.")
				return
			}
		}
		fn(w, r, a)
	}
}

// unrestricted refuses a key limited to some users or providers.
func (c *Console) unrestricted(fn consoleHandler) consoleHandler {
	return func(w http.ResponseWriter, r *http.Request, a *adminSession) {
		if a.restricted() {
			c.renderError(w, r, a, http.StatusForbidden, "forbidden", "Not for this key",
				"The audit log and API keys need an admin key without user or provider restrictions.")
			return
		}
		fn(w, r, a)
	}
}

// session returns the live session of r, or nil. It ends sessions whose
// key was revoked or lost the admin scope, and moves the idle expiry at
// most once a minute.
func (c *Console) session(w http.ResponseWriter, r *http.Request) *adminSession {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || !validSessionID(ck.Value) {
		return nil
	}
	sess, key, err := c.cfg.Store.GetAdminSession(r.Context(), ck.Value)
	if err != nil {
		if !tokenbroker.IsNotFound(err) {
			c.log.ErrorContext(r.Context(), "read console session", "err", err.Error())
		}
		c.clearCookie(w, sessionCookie)
		return nil
	}
	if key.Revoked() || !slices.Contains(key.Scopes, tokenbroker.ScopeAdmin) {
		c.log.InfoContext(r.Context(), "console session ended: its key was revoked or lost the admin scope", "key_prefix", key.Prefix)
		if err := c.cfg.Store.DeleteAdminSession(r.Context(), ck.Value); err != nil {
			c.log.WarnContext(r.Context(), "delete console session", "err", err.Error())
		}
		c.clearCookie(w, sessionCookie)
		return nil
	}
	if sess.IdleUntil.Sub(c.now()) < c.cfg.IdleTimeout-time.Minute {
		if _, err := c.cfg.Store.TouchAdminSession(r.Context(), ck.Value, c.cfg.IdleTimeout); err != nil {
			c.log.WarnContext(r.Context(), "extend console session", "err", err.Error())
		}
	}
	return &adminSession{sess: sess, key: key, csrf: c.mac(csrfSession, ck.Value)}
}

func (c *Console) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     c.path("/admin"),
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   c.secure,
		SameSite: http.SameSiteStrictMode,
	})
}

func (c *Console) clearCookie(w http.ResponseWriter, name string) { c.setCookie(w, name, "", -1) }

// newID draws 32 random bytes in unpadded base64url.
func (c *Console) newID() (string, error) {
	b := make([]byte, 32)
	if err := c.readRand(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

type signInData struct {
	consolePage
	Error string
}

// serveSignInForm shows the sign-in form with a fresh CSRF token bound to
// a cookie of this browser.
func (c *Console) serveSignInForm(w http.ResponseWriter, r *http.Request) {
	if a := c.session(w, r); a != nil {
		http.Redirect(w, r, c.path("/admin/"), http.StatusSeeOther)
		return
	}
	c.renderSignIn(w, r, http.StatusOK, "")
}

func (c *Console) renderSignIn(w http.ResponseWriter, r *http.Request, status int, msg string) {
	nonce, err := c.newID()
	if err != nil {
		c.internalError(w, r, nil, "draw sign-in nonce", err)
		return
	}
	c.setCookie(w, signInCookie, nonce, 3600)
	data := signInData{consolePage: c.page(nil, "Sign in", ""), Error: msg}
	data.Narrow = true
	data.CSRF = c.mac(csrfSignIn, nonce)
	c.render(w, r, status, signInTmpl, data)
}

// keyPrefixRe finds the public prefix of something shaped like an API key,
// for the log of a failed sign-in; the secret part is never logged.
var keyPrefixRe = regexp.MustCompile(`^tbk_([a-z0-9]{12})_`)

// serveSignIn checks the posted key. Failures are logged (client address,
// the key's public prefix if it has one, the reason) and rate-limited per
// client address and overall; a limited client gets 429 before its key is
// even looked at.
func (c *Console) serveSignIn(w http.ResponseWriter, r *http.Request) {
	client := clientAddr(r)
	if wait, blocked := c.limiter.Blocked(client, c.now()); blocked {
		c.log.WarnContext(r.Context(), "console sign-in refused: too many failures", "client", client)
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		c.renderError(w, r, nil, http.StatusTooManyRequests, "too_many_attempts", "Too many failed sign-ins",
			"Wait "+wait.Round(time.Second).String()+" before you try again.")
		return
	}
	ck, err := r.Cookie(signInCookie)
	if err != nil || !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(c.mac(csrfSignIn, ck.Value))) {
		c.renderSignIn(w, r, http.StatusForbidden, "The sign-in form expired. Please try again.")
		return
	}
	presented := strings.TrimSpace(r.PostFormValue("key"))
	fail := func(reason, msg string) {
		c.limiter.Failed(client, c.now())
		prefix := ""
		if m := keyPrefixRe.FindStringSubmatch(presented); m != nil {
			prefix = m[1]
		}
		c.log.WarnContext(r.Context(), "console sign-in failed", "client", client, "key_prefix", prefix, "reason", reason)
		c.renderSignIn(w, r, http.StatusUnauthorized, msg)
	}
	k, err := c.cfg.Backend.AuthenticateKey(r.Context(), presented)
	switch {
	case tokenbroker.ErrorCode(err) == tokenbroker.EUNAUTHORIZED:
		fail("unknown, malformed or revoked key", "That key was not accepted.")
		return
	case err != nil:
		c.internalError(w, r, nil, "check a sign-in key", err)
		return
	case !slices.Contains(k.Scopes, tokenbroker.ScopeAdmin):
		fail("key lacks the admin scope", "That key does not have the admin scope.")
		return
	}
	id, err := c.newID()
	if err != nil {
		c.internalError(w, r, nil, "draw session id", err)
		return
	}
	now, err := c.cfg.Store.Now(r.Context())
	if err != nil {
		c.internalError(w, r, nil, "read the database clock", err)
		return
	}
	sess := &tokenbroker.AdminSession{ID: id, KeyID: k.ID,
		IdleUntil: now.Add(c.cfg.IdleTimeout), ExpiresAt: now.Add(c.cfg.Lifetime)}
	if err := c.cfg.Store.CreateAdminSession(r.Context(), sess); err != nil {
		c.internalError(w, r, nil, "create console session", err)
		return
	}
	if n, err := c.cfg.Store.DeleteExpiredAdminSessions(r.Context()); err != nil {
		c.log.WarnContext(r.Context(), "delete expired console sessions", "err", err.Error())
	} else if n > 0 {
		c.log.DebugContext(r.Context(), "deleted expired console sessions", "count", n)
	}
	c.clearCookie(w, signInCookie)
	c.setCookie(w, sessionCookie, id, int(c.cfg.Lifetime.Seconds()))
	a := &adminSession{sess: sess, key: k}
	c.audit(a, tokenbroker.AuditConsoleSignIn, "", "", nil, "client "+client)
	c.log.InfoContext(r.Context(), "console sign-in", "key_prefix", k.Prefix, "client", client)
	http.Redirect(w, r, c.path("/admin/"), http.StatusSeeOther)
}

func (c *Console) serveSignOut(w http.ResponseWriter, r *http.Request, a *adminSession) {
	if err := c.cfg.Store.DeleteAdminSession(r.Context(), a.sess.ID); err != nil {
		c.internalError(w, r, a, "delete console session", err)
		return
	}
	c.clearCookie(w, sessionCookie)
	c.log.InfoContext(r.Context(), "console sign-out", "key_prefix", a.key.Prefix)
	c.renderSignIn(w, r, http.StatusOK, "")
}

// clientAddr is the request's peer address without the port. Headers set
// by proxies (X-Forwarded-For) are not trusted: any client can send them.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// SignInLimits tune a [SignInLimiter]; zero fields take the defaults.
type SignInLimits struct {
	// Burst failures a client may make at once, then one more per Every
	// (defaults 5 and 12s: five a minute).
	Burst int
	Every time.Duration
	// GlobalBurst and GlobalEvery bound failures from all clients
	// together (defaults 50 and 1s), against guessing from many addresses.
	GlobalBurst int
	GlobalEvery time.Duration
	// MaxClients bounds the clients remembered (default 10000).
	MaxClients int
}

// SignInLimiter limits failed console sign-ins per client address and
// overall with token buckets that only failures drain; it takes the time
// from its callers, so a test drives it with its own clock. It is safe for
// concurrent use. Its state is per process: with n replicas behind a load
// balancer a client gets up to n times the rate.
type SignInLimiter struct {
	lim SignInLimits

	// mu guards clients and global. It protects only the limiter's own
	// state; no invariant of docs/design.md is involved.
	mu      sync.Mutex
	clients map[string]*rate.Limiter
	global  *rate.Limiter
}

// NewSignInLimiter returns a limiter with lim's limits.
func NewSignInLimiter(lim SignInLimits) *SignInLimiter {
	if lim.Burst <= 0 {
		lim.Burst = 5
	}
	if lim.Every <= 0 {
		lim.Every = 12 * time.Second
	}
	if lim.GlobalBurst <= 0 {
		lim.GlobalBurst = 50
	}
	if lim.GlobalEvery <= 0 {
		lim.GlobalEvery = time.Second
	}
	if lim.MaxClients <= 0 {
		lim.MaxClients = 10000
	}
	return &SignInLimiter{
		lim:     lim,
		clients: make(map[string]*rate.Limiter),
		global:  rate.NewLimiter(rate.Every(lim.GlobalEvery), lim.GlobalBurst),
	}
}

// Blocked reports whether client must wait before another sign-in, and
// how long.
func (l *SignInLimiter) Blocked(client string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	wait := time.Duration(0)
	for _, b := range []*rate.Limiter{l.clients[client], l.global} {
		if b == nil {
			continue
		}
		if tokens := b.TokensAt(now); tokens < 1 {
			d := time.Duration((1 - tokens) / float64(b.Limit()) * float64(time.Second))
			wait = max(wait, d)
		}
	}
	return wait, wait > 0
}

// Failed records a failed sign-in of client.
func (l *SignInLimiter) Failed(client string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.clients[client]
	if b == nil {
		if len(l.clients) >= l.lim.MaxClients {
			for k, v := range l.clients {
				if v.TokensAt(now) >= float64(l.lim.Burst) {
					delete(l.clients, k)
				}
			}
			if len(l.clients) >= l.lim.MaxClients {
				clear(l.clients)
			}
		}
		b = rate.NewLimiter(rate.Every(l.lim.Every), l.lim.Burst)
		l.clients[client] = b
	}
	b.AllowN(now, 1)
	l.global.AllowN(now, 1)
}
