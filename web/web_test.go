package web_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/idptest"
	"github.com/tokenbroker/tokenbroker/internal/testdb"
	"github.com/tokenbroker/tokenbroker/provider"
	"github.com/tokenbroker/tokenbroker/store/sqlite"
	"github.com/tokenbroker/tokenbroker/web"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is one broker web handler on loopback with a real SQLite store, a
// real provider and a real fakeidp.
type env struct {
	tb    testing.TB
	store tokenbroker.Store
	idp   *fakeidp.Server
	srv   *httptest.Server
	logs  *logBuffer

	mu     sync.Mutex
	events []tokenbroker.AuditEvent
}

type envOptions struct {
	idp       fakeidp.Config
	now       func() time.Time
	allowList []string
	// validateURL replaces fakeidp's userinfo endpoint as the provider's
	// validation URL; "none" configures no validation URL.
	validateURL string
}

// MustStartEnv starts an env; everything is closed at cleanup.
func MustStartEnv(tb testing.TB, o envOptions) *env {
	tb.Helper()
	e := &env{tb: tb, store: testdb.SQLite(tb), logs: &logBuffer{}}
	e.idp = mustStartIdP(tb, o.idp)
	ln, base := mustListen(tb)
	switch o.validateURL {
	case "":
		o.validateURL = e.idp.Endpoints().Userinfo
	case "none":
		o.validateURL = ""
	}
	providers := mustDemoProvider(tb, e.idp, o.validateURL)
	h, err := web.New(web.Config{
		Store:              e.store,
		Providers:          providers,
		Auditor:            tokenbroker.AuditorFunc(e.record),
		BaseURL:            base,
		ReturnURLAllowList: o.allowList,
		Logger:             slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:                o.now,
	})
	if err != nil {
		tb.Fatalf("web.New: %v", err)
	}
	e.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: h}}
	e.srv.Start()
	tb.Cleanup(e.srv.Close)
	return e
}

// mustStartIdP starts a fakeidp that requires PKCE, closed at cleanup.
func mustStartIdP(tb testing.TB, cfg fakeidp.Config) *fakeidp.Server {
	tb.Helper()
	cfg.RequirePKCE = true
	return idptest.MustStart(tb, cfg)
}

// mustListen opens a loopback listener for the server under test, so its
// base URL is known before the handler is made; the server closes it.
func mustListen(tb testing.TB) (ln net.Listener, baseURL string) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return ln, "http://" + ln.Addr().String()
}

// mustDemoProvider returns the providers of the tests: "demo" (display name
// Demo), an oauth2 provider speaking to idp that validates tokens at
// validateURL ("" for none).
func mustDemoProvider(tb testing.TB, idp *fakeidp.Server, validateURL string) tokenbroker.Providers {
	tb.Helper()
	pc := idptest.OAuth2(idp, "demo")
	pc.DisplayName, pc.ValidateURL, pc.InsecureHTTP = "Demo", validateURL, true
	providers, err := provider.NewRegistry(context.Background(), &provider.Config{Providers: []provider.ProviderConfig{pc}}, provider.Options{})
	if err != nil {
		tb.Fatalf("provider registry: %v", err)
	}
	return providers
}

func (e *env) record(ev tokenbroker.AuditEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, ev)
}

// auditEvents returns the events written with a change (in the store) and
// those recorded through the auditor, in that order.
func (e *env) auditEvents() []tokenbroker.AuditEvent {
	e.tb.Helper()
	stored, err := e.store.ListAudit(context.Background(), tokenbroker.AuditFilter{})
	if err != nil {
		e.tb.Fatal(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return append(stored, e.events...)
}

// MustSession creates a connect session for userID and returns its URL.
func (e *env) MustSession(userID, returnURL string) string {
	e.tb.Helper()
	var b [32]byte
	rand.Read(b[:])
	s := &tokenbroker.ConnectSession{
		ID: base64.RawURLEncoding.EncodeToString(b[:]), UserID: userID,
		Providers: []string{"demo"}, ReturnURL: returnURL, CreatedBy: "tb_test",
		ExpiresAt: time.Now().Add(15 * time.Minute),
	}
	if err := e.store.CreateConnectSession(context.Background(), s); err != nil {
		e.tb.Fatalf("create connect session: %v", err)
	}
	return e.srv.URL + "/connect/" + s.ID
}

// logBuffer collects log output safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// browser is an HTTP client with its own cookie jar that does not follow
// redirects, so each step can be inspected.
type browser struct {
	tb testing.TB
	c  *http.Client
}

func newBrowser(tb testing.TB) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{tb: tb, c: &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type page struct {
	status int
	header http.Header
	body   string
}

// location returns the redirect target.
func (p page) location() string { return p.header.Get("Location") }

func (b *browser) do(req *http.Request) page {
	b.tb.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.tb.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.tb.Fatal(err)
	}
	return page{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

func (b *browser) get(u string) page {
	b.tb.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.tb.Fatal(err)
	}
	return b.do(req)
}

func (b *browser) post(u string, form url.Values) page {
	b.tb.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		b.tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var (
	csrfRe   = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	actionRe = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
)

// connectForm returns the action URL and CSRF token of the connect page's
// first form.
func connectForm(tb testing.TB, base string, p page) (action, csrf string) {
	tb.Helper()
	a, c := actionRe.FindStringSubmatch(p.body), csrfRe.FindStringSubmatch(p.body)
	if a == nil || c == nil {
		tb.Fatalf("no connect form on the page (status %d):\n%s", p.status, p.body)
	}
	return base + html.UnescapeString(a[1]), html.UnescapeString(c[1])
}

// MustStart opens the connect page and presses Connect; it returns the
// provider's authorization URL.
func (b *browser) MustStart(e *env, connectURL string) string {
	b.tb.Helper()
	p := b.get(connectURL)
	if p.status != http.StatusOK {
		b.tb.Fatalf("connect page: status %d\n%s", p.status, p.body)
	}
	action, csrf := connectForm(b.tb, e.srv.URL, p)
	p = b.post(action, url.Values{"csrf": {csrf}})
	target := p.leaveFor()
	if p.status != http.StatusOK || !strings.HasPrefix(target, e.idp.URL()) {
		b.tb.Fatalf("start: status %d, going on to %q\n%s", p.status, target, p.body)
	}
	return target
}

var leaveRe = regexp.MustCompile(`<meta http-equiv="refresh" content="0; url=([^"]+)">`)

// leaveFor returns where the page that leaves for the provider sends the
// browser, or "".
func (p page) leaveFor() string {
	m := leaveRe.FindStringSubmatch(p.body)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// MustAuthorize runs the provider's authorize step (auto-approve) and
// returns the callback URL it redirects to.
func (b *browser) MustAuthorize(e *env, authURL string) string {
	b.tb.Helper()
	p := b.get(authURL)
	if p.status != http.StatusFound || !strings.HasPrefix(p.location(), e.srv.URL+"/oauth/callback?") {
		b.tb.Fatalf("authorize: status %d, location %q\n%s", p.status, p.location(), p.body)
	}
	return p.location()
}

func wantErrorPage(tb testing.TB, p page, status int, code string) {
	tb.Helper()
	if p.status != status || !strings.Contains(p.body, "<code>"+code+"</code>") {
		tb.Fatalf("got status %d, want %d with error code %q:\n%s", p.status, status, code, p.body)
	}
}

func wantNoLink(tb testing.TB, e *env, userID string) {
	tb.Helper()
	if l, err := e.store.GetLink(context.Background(), userID, "demo"); !tokenbroker.IsNotFound(err) {
		tb.Fatalf("GetLink = %+v, %v; want not found", l, err)
	}
}

func TestConnectFlowStoresLink(t *testing.T) {
	e := MustStartEnv(t, envOptions{idp: fakeidp.Config{AutoApprove: "alice"}})
	b := newBrowser(t)
	connectURL := e.MustSession("u1", "")

	p := b.get(connectURL)
	if p.status != http.StatusOK || !strings.Contains(p.body, "Not connected") {
		t.Fatalf("connect page: status %d\n%s", p.status, p.body)
	}
	for k, want := range map[string]string{
		"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := p.header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	csp := p.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "form-action 'self';") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	if sc := p.header.Values("Set-Cookie"); len(sc) != 2 || !strings.Contains(sc[0], "HttpOnly") || !strings.Contains(sc[0], "SameSite=Lax") {
		t.Errorf("Set-Cookie = %q, want two HttpOnly SameSite=Lax cookies", sc)
	}

	authURL := b.MustStart(e, connectURL)
	au, _ := url.Parse(authURL)
	if q := au.Query(); q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 ||
		len(q.Get("state")) != 43 || q.Get("redirect_uri") != e.srv.URL+"/oauth/callback" {
		t.Fatalf("authorization URL lacks PKCE S256, state or redirect URI: %s", authURL)
	}
	cb := b.MustAuthorize(e, authURL)
	p = b.get(cb)
	if p.status != http.StatusSeeOther || p.location() != strings.TrimPrefix(connectURL, e.srv.URL)+"?connected=demo" {
		t.Fatalf("callback: status %d, location %q\n%s", p.status, p.location(), p.body)
	}
	p = b.get(e.srv.URL + p.location())
	if p.status != http.StatusOK || !strings.Contains(p.body, "Connected as alice") || !strings.Contains(p.body, `role="status"`) {
		t.Fatalf("connect page after callback: status %d\n%s", p.status, p.body)
	}

	l, err := e.store.GetLink(context.Background(), "u1", "demo")
	if err != nil {
		t.Fatal(err)
	}
	if l.AccountLogin != "alice" || l.AccountID != "1001" || l.Token.AccessToken == "" || l.Token.RefreshToken == "" || l.State != tokenbroker.LinkActive {
		t.Fatalf("link = %+v", l)
	}
	evs := e.auditEvents()
	if len(evs) != 1 || evs[0].Action != tokenbroker.AuditLinkCreate || evs[0].Outcome != "ok" ||
		evs[0].UserID != "u1" || evs[0].ProviderID != "demo" || evs[0].Actor != "browser" {
		t.Fatalf("audit events = %+v", evs)
	}
	// No secret reaches a log line, an audit event or a page.
	code := mustQuery(t, cb, "code")
	state := mustQuery(t, cb, "state")
	sessionID := connectURL[strings.LastIndex(connectURL, "/")+1:]
	for _, secret := range []string{l.Token.AccessToken, l.Token.RefreshToken, code, state, sessionID} {
		if strings.Contains(e.logs.String(), secret) || strings.Contains(evs[0].Detail, secret) || strings.Contains(p.body, l.Token.AccessToken) {
			t.Errorf("a secret leaked into logs, audit or page")
		}
	}
}

func mustQuery(tb testing.TB, raw, key string) string {
	tb.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Query().Get(key) == "" {
		tb.Fatalf("no %s in %s", key, raw)
	}
	return u.Query().Get(key)
}

func TestReplayedStateRejected(t *testing.T) {
	e := MustStartEnv(t, envOptions{idp: fakeidp.Config{AutoApprove: "alice"}})
	b := newBrowser(t)
	cb := b.MustAuthorize(e, b.MustStart(e, e.MustSession("u1", "")))
	if p := b.get(cb); p.status != http.StatusSeeOther {
		t.Fatalf("first callback: %d\n%s", p.status, p.body)
	}
	before, err := e.store.GetLink(context.Background(), "u1", "demo")
	if err != nil {
		t.Fatal(err)
	}
	wantErrorPage(t, b.get(cb), http.StatusBadRequest, "state_invalid")
	after, err := e.store.GetLink(context.Background(), "u1", "demo")
	if err != nil {
		t.Fatal(err)
	}
	if after.Generation != before.Generation || after.Token.AccessToken != before.Token.AccessToken {
		t.Fatalf("replayed callback changed the link: generation %d -> %d", before.Generation, after.Generation)
	}
	if s := e.idp.Stats(); s.CodeExchanges != 1 {
		t.Errorf("fakeidp code exchanges = %d, want 1 (the replay must not reach the provider)", s.CodeExchanges)
	}
}

func TestExpiredStateRejected(t *testing.T) {
	// The handler's clock runs an hour behind the database's, so every
	// state it issues has already expired when the store judges it.
	e := MustStartEnv(t, envOptions{
		idp: fakeidp.Config{AutoApprove: "alice"},
		now: func() time.Time { return time.Now().Add(-time.Hour) },
	})
	b := newBrowser(t)
	cb := b.MustAuthorize(e, b.MustStart(e, e.MustSession("u1", "")))
	wantErrorPage(t, b.get(cb), http.StatusBadRequest, "state_invalid")
	wantNoLink(t, e, "u1")
}

func TestStateFromAnotherBrowserRejected(t *testing.T) {
	e := MustStartEnv(t, envOptions{idp: fakeidp.Config{AutoApprove: "alice"}})
	victim, attacker := newBrowser(t), newBrowser(t)
	// The attacker holds a session of its own, so it has a binding cookie,
	// just not for the victim's session.
	attacker.get(e.MustSession("u2", ""))
	cb := victim.MustAuthorize(e, victim.MustStart(e, e.MustSession("u1", "")))

	wantErrorPage(t, attacker.get(cb), http.StatusForbidden, "wrong_browser")
	wantNoLink(t, e, "u1")
	wantNoLink(t, e, "u2")

	// The attempt did not burn the victim's state.
	if p := victim.get(cb); p.status != http.StatusSeeOther {
		t.Fatalf("victim's callback after the attempt: %d\n%s", p.status, p.body)
	}
	if _, err := e.store.GetLink(context.Background(), "u1", "demo"); err != nil {
		t.Fatal(err)
	}
}

func TestReturnURL(t *testing.T) {
	allowed := "https://app.example.com/settings/integrations?tab=accounts"
	e := MustStartEnv(t, envOptions{
		idp:       fakeidp.Config{AutoApprove: "alice"},
		allowList: []string{"https://app.example.com/settings/"},
	})
	for _, tt := range []struct {
		name, returnURL, wantPrefix string
	}{
		{"on the allow-list", allowed, allowed},
		{"off the allow-list", "https://evil.example.com/settings/", "/connect/"},
		{"path escape", "https://app.example.com/settings/../admin", "/connect/"},
		{"user info", "https://app.example.com@evil.example.com/settings/", "/connect/"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := newBrowser(t)
			connectURL := e.MustSession("u-"+strings.ReplaceAll(tt.name, " ", "-"), tt.returnURL)
			p := b.get(connectURL)
			if tt.wantPrefix == allowed != strings.Contains(p.body, "Done, return to the application") {
				t.Errorf("return link shown = %v, want %v", !(tt.wantPrefix == allowed), tt.wantPrefix == allowed)
			}
			p = b.get(b.MustAuthorize(e, b.MustStart(e, connectURL)))
			if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location(), tt.wantPrefix) {
				t.Fatalf("callback: status %d, location %q, want prefix %q", p.status, p.location(), tt.wantPrefix)
			}
		})
	}
}

func TestSecondBrowserRefused(t *testing.T) {
	e := MustStartEnv(t, envOptions{})
	first, second := newBrowser(t), newBrowser(t)
	connectURL := e.MustSession("u1", "")
	// A link checker's HEAD does not use the link up.
	head, err := http.NewRequest(http.MethodHead, connectURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := second.do(head); p.status != http.StatusOK || len(p.header.Values("Set-Cookie")) != 0 {
		t.Fatalf("HEAD: %d, cookies %q", p.status, p.header.Values("Set-Cookie"))
	}
	if p := first.get(connectURL); p.status != http.StatusOK {
		t.Fatalf("first open: %d", p.status)
	}
	p := second.get(connectURL)
	wantErrorPage(t, p, http.StatusForbidden, "link_already_used")
	if !strings.Contains(p.body, "This link was already used") || len(p.header.Values("Set-Cookie")) != 0 {
		t.Fatalf("refusal page:\n%s", p.body)
	}
	// The first browser may come back as often as it likes.
	if p := first.get(connectURL); p.status != http.StatusOK {
		t.Fatalf("reopen in the first browser: %d", p.status)
	}
	// A forged cookie named like the binding but holding the session id
	// (the URL is all the second browser knows) does not pass.
	sessionID := connectURL[strings.LastIndex(connectURL, "/")+1:]
	u, _ := url.Parse(connectURL)
	for _, c := range first.c.Jar.Cookies(u) {
		second.c.Jar.SetCookies(u, []*http.Cookie{{Name: c.Name, Value: sessionID, Path: "/"}})
	}
	wantErrorPage(t, second.get(connectURL), http.StatusForbidden, "link_already_used")
}

func TestStartRefusedWithoutCSRFOrBinding(t *testing.T) {
	e := MustStartEnv(t, envOptions{idp: fakeidp.Config{AutoApprove: "alice"}})
	b := newBrowser(t)
	connectURL := e.MustSession("u1", "")
	action, csrf := connectForm(t, e.srv.URL, b.get(connectURL))

	wantErrorPage(t, b.post(action, nil), http.StatusForbidden, "csrf_failed")
	wantErrorPage(t, b.post(action, url.Values{"csrf": {csrf + "x"}}), http.StatusForbidden, "csrf_failed")
	// Another browser with the right token but no binding cookie.
	wantErrorPage(t, newBrowser(t).post(action, url.Values{"csrf": {csrf}}), http.StatusForbidden, "wrong_browser")
	// A provider outside the session.
	wantErrorPage(t, b.post(strings.Replace(action, "/start/demo", "/start/other", 1), url.Values{"csrf": {csrf}}),
		http.StatusNotFound, "unknown_provider")
	if s := e.idp.Stats(); s.Authorizations != 0 {
		t.Errorf("fakeidp authorizations = %d, want 0", s.Authorizations)
	}
	if p := b.post(action, url.Values{"csrf": {csrf}}); p.status != http.StatusOK || !strings.HasPrefix(p.leaveFor(), e.idp.URL()) {
		t.Fatalf("with the token: %d\n%s", p.status, p.body)
	}
}

func TestProviderAccessDenied(t *testing.T) {
	e := MustStartEnv(t, envOptions{}) // no auto-approve: the login page
	b := newBrowser(t)
	authURL := b.MustStart(e, e.MustSession("u1", ""))
	au, _ := url.Parse(authURL)
	form := au.Query()
	form.Set("action", "deny")
	p := b.post(e.idp.URL()+au.Path, form)
	if p.status != http.StatusFound || !strings.Contains(p.location(), "error=access_denied") {
		t.Fatalf("deny at fakeidp: %d %q", p.status, p.location())
	}
	p = b.get(p.location())
	wantErrorPage(t, p, http.StatusBadRequest, "access_denied")
	if !strings.Contains(p.body, "You did not allow access at Demo") || !strings.Contains(p.body, "Back to your connections") {
		t.Fatalf("denied page:\n%s", p.body)
	}
	wantNoLink(t, e, "u1")
	if evs := e.auditEvents(); len(evs) != 1 || evs[0].Outcome != "access_denied" {
		t.Fatalf("audit events = %+v", evs)
	}
}

func TestUnknownSessionAndPaths(t *testing.T) {
	e := MustStartEnv(t, envOptions{})
	b := newBrowser(t)
	wantErrorPage(t, b.get(e.srv.URL+"/connect/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), http.StatusNotFound, "not_found")
	wantErrorPage(t, b.get(e.srv.URL+"/connect/short"), http.StatusNotFound, "not_found")
	wantErrorPage(t, b.get(e.srv.URL+"/nothing/here"), http.StatusNotFound, "not_found")
	wantErrorPage(t, b.get(e.srv.URL+"/oauth/callback?code=x"), http.StatusBadRequest, "state_invalid")
	wantErrorPage(t, b.get(e.srv.URL+"/oauth/callback?code=x&state=nope"), http.StatusBadRequest, "state_invalid")
	// The start button's address with GET: 405 and Allow, not 404.
	p := b.get(e.MustSession("u1", "") + "/start/demo")
	wantErrorPage(t, p, http.StatusMethodNotAllowed, "invalid_request")
	if allow := p.header.Get("Allow"); allow != "POST" {
		t.Errorf("Allow = %q, want POST", allow)
	}
}

// TestAuthRequestKeepsNoSessionID: the state a code flow stores holds the
// hash of its connect session's id, never the id (the connect URL's
// secret), so a database reader cannot rebuild the URL; the flow still
// completes.
func TestAuthRequestKeepsNoSessionID(t *testing.T) {
	e := MustStartEnv(t, envOptions{idp: fakeidp.Config{AutoApprove: "alice"}})
	b := newBrowser(t)
	connectURL := e.MustSession("u1", "")
	sessionID := connectURL[strings.LastIndex(connectURL, "/")+1:]
	cb := b.MustAuthorize(e, b.MustStart(e, connectURL))

	db, err := sql.Open("sqlite", "file:"+e.store.(*sqlite.Store).Path()+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT * FROM auth_requests`)
	if err != nil {
		t.Fatal(err)
	}
	cols, _ := rows.Columns()
	n := 0
	for rows.Next() {
		n++
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if strings.Contains(fmt.Sprint(v), sessionID) {
				t.Errorf("auth_requests.%s holds the connect session id", cols[i])
			}
		}
	}
	if err := rows.Close(); err != nil || n != 1 {
		t.Fatalf("%d auth requests (%v), want 1", n, err)
	}
	if p := b.get(cb); p.status != http.StatusSeeOther || !strings.Contains(p.location(), "/connect/"+sessionID) {
		t.Fatalf("callback: status %d, location %q\n%s", p.status, p.location(), p.body)
	}
	if _, err := e.store.GetLink(context.Background(), "u1", "demo"); err != nil {
		t.Fatalf("no link after the callback: %v", err)
	}
	// The log line of the connection names whose link it is.
	if !regexp.MustCompile(`msg="web: link connected" user=u1 provider=demo`).MatchString(e.logs.String()) {
		t.Errorf("no link connected line naming the user:\n%s", e.logs.String())
	}
}

func TestValidationOutcomes(t *testing.T) {
	answer := func(status int) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, `{"message":"no"}`)
		}))
		t.Cleanup(srv.Close)
		return srv.URL + "/user"
	}
	for _, tt := range []struct {
		name, validateURL string
		wantStored        bool
		wantLogin         string
	}{
		{"validated", "", true, "alice"},
		{"provider cannot validate", "none", true, ""},
		{"rate limited keeps the token", answer(http.StatusTooManyRequests), true, ""},
		{"unavailable keeps the token", answer(http.StatusServiceUnavailable), true, ""},
		{"token rejected stores nothing", answer(http.StatusUnauthorized), false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := MustStartEnv(t, envOptions{idp: fakeidp.Config{AutoApprove: "alice"}, validateURL: tt.validateURL})
			b := newBrowser(t)
			p := b.get(b.MustAuthorize(e, b.MustStart(e, e.MustSession("u1", ""))))
			if !tt.wantStored {
				wantErrorPage(t, p, http.StatusBadGateway, "provider_error")
				wantNoLink(t, e, "u1")
				return
			}
			if p.status != http.StatusSeeOther {
				t.Fatalf("callback: %d\n%s", p.status, p.body)
			}
			l, err := e.store.GetLink(context.Background(), "u1", "demo")
			if err != nil || l.AccountLogin != tt.wantLogin || l.Token.AccessToken == "" {
				t.Fatalf("link = %+v, %v; want login %q", l, err, tt.wantLogin)
			}
		})
	}
}

// TestConcurrentCallbacksOneWins sends the same callback twice at once
// from the bound browser: the state is consumed by one statement, so
// exactly one goes on to the provider.
func TestConcurrentCallbacksOneWins(t *testing.T) {
	e := MustStartEnv(t, envOptions{idp: fakeidp.Config{AutoApprove: "alice"}})
	b := newBrowser(t)
	cb := b.MustAuthorize(e, b.MustStart(e, e.MustSession("u1", "")))
	statuses := make(chan int, 2)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			resp, err := b.c.Get(cb)
			if err != nil {
				statuses <- 0
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	wg.Wait()
	close(statuses)
	got := map[int]int{}
	for s := range statuses {
		got[s]++
	}
	if got[http.StatusSeeOther] != 1 || got[http.StatusBadRequest] != 1 {
		t.Fatalf("statuses = %v, want one 303 and one 400", got)
	}
	if s := e.idp.Stats(); s.CodeExchanges != 1 {
		t.Errorf("code exchanges = %d, want 1", s.CodeExchanges)
	}
}

// TestCookieAttributes checks the binding cookie of a server whose public
// URL is https behind a path prefix: Secure, HttpOnly, SameSite=Lax, and
// scoped to the session's connect path and the callback under the prefix.
func TestCookieAttributes(t *testing.T) {
	store := testdb.SQLite(t)
	providers := demoRegistry(t)
	h, err := web.New(web.Config{Store: store, Providers: providers, BaseURL: "https://broker.example.com/tb/"})
	if err != nil {
		t.Fatal(err)
	}
	if got := h.RedirectURI(); got != "https://broker.example.com/tb/oauth/callback" {
		t.Errorf("RedirectURI = %q", got)
	}
	id := "S3ss10n-1d-0123456789abcdefghijklmnopq"
	if err := store.CreateConnectSession(context.Background(), &tokenbroker.ConnectSession{
		ID: id, UserID: "u1", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/connect/"+id, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d\n%s", rec.Code, rec.Body)
	}
	var paths []string
	for _, c := range rec.Result().Cookies() {
		if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.MaxAge < 3600 ||
			!strings.HasPrefix(c.Name, "tb_connect_") || strings.Contains(c.Name+c.Value, id) {
			t.Errorf("cookie %+v", c)
		}
		paths = append(paths, c.Path)
	}
	if want := []string{"/tb/connect/" + id, "/tb/oauth/callback"}; strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Errorf("cookie paths = %q, want %q", paths, want)
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self';") {
		t.Errorf("CSP = %q", csp)
	}
	if !strings.Contains(rec.Body.String(), `action="/tb/connect/`+id+`/start/demo"`) {
		t.Errorf("form action not under the prefix:\n%s", rec.Body)
	}
}

// demoRegistry is a registry with one oauth2 provider "demo" whose IdP
// is never called.
func demoRegistry(t *testing.T) *provider.Registry {
	t.Helper()
	providers, err := provider.NewRegistry(context.Background(), &provider.Config{Providers: []provider.ProviderConfig{{
		ID: "demo", Kind: "oauth2", ClientID: "c", AuthURL: "https://idp.example.com/authorize",
		TokenURL: "https://idp.example.com/token",
	}}}, provider.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return providers
}

func TestNewRejectsBadConfig(t *testing.T) {
	store := testdb.SQLite(t)
	providers := demoRegistry(t)
	for _, cfg := range []web.Config{
		{Store: store, Providers: providers, BaseURL: "broker.example.com"},
		{Store: store, Providers: providers, BaseURL: "https://u:p@broker.example.com"},
		{Store: store, Providers: providers, BaseURL: "https://broker.example.com", ReturnURLAllowList: []string{"//evil.com"}},
		{Store: store, Providers: providers, BaseURL: "https://broker.example.com", CookieKey: []byte("short")},
		{Providers: providers, BaseURL: "https://broker.example.com"},
	} {
		if _, err := web.New(cfg); tokenbroker.ErrorCode(err) != tokenbroker.EINVALID {
			t.Errorf("New(%+v) = %v, want invalid_request", cfg, err)
		}
	}
}

// TestExchangeFailureStoresNothing: the provider's token endpoint fails;
// the page says so with provider_error, nothing is stored, the state is
// spent, and no log line holds the code, state or verifier.
func TestExchangeFailureStoresNothing(t *testing.T) {
	e := MustStartEnv(t, envOptions{idp: fakeidp.Config{AutoApprove: "alice"}})
	b := newBrowser(t)
	cb := b.MustAuthorize(e, b.MustStart(e, e.MustSession("u1", "")))
	e.idp.SetFaults(fakeidp.Faults{P503: 1})
	p := b.get(cb)
	wantErrorPage(t, p, http.StatusBadGateway, "provider_error")
	if !strings.Contains(p.body, "Back to your connections") {
		t.Errorf("no way back on the error page:\n%s", p.body)
	}
	wantNoLink(t, e, "u1")
	e.idp.SetFaults(fakeidp.Faults{})
	wantErrorPage(t, b.get(cb), http.StatusBadRequest, "state_invalid")
	if evs := e.auditEvents(); len(evs) != 1 || evs[0].Outcome != "provider_error" {
		t.Errorf("audit events = %+v", evs)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "code exchange failed") {
		t.Errorf("the failure was not logged:\n%s", logs)
	}
	for _, secret := range []string{mustQuery(t, cb, "code"), mustQuery(t, cb, "state")} {
		if strings.Contains(logs, secret) {
			t.Errorf("a secret leaked into the log:\n%s", logs)
		}
	}
}
