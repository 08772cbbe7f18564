package web_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/testclock"
	"github.com/tokenbroker/tokenbroker/web"
)

// TestConsoleSessionCookie: the session cookie is HttpOnly, SameSite=Strict
// and scoped to /admin, and the key never appears in a URL or the page.
func TestConsoleSessionCookie(t *testing.T) {
	e := mustStartConsole(t, consoleOptions{})
	key, _ := e.mustKey("op", []string{tokenbroker.ScopeAdmin}, nil)
	c := newConsoleClient(t, e)
	p := c.signIn(key)
	if p.status != http.StatusSeeOther || p.location() != "/admin/" {
		t.Fatalf("sign in: %d %q", p.status, p.location())
	}
	var sess *http.Cookie
	for _, ck := range (&http.Response{Header: p.header}).Cookies() {
		if ck.Name == "tb_admin" {
			sess = ck
		}
	}
	if sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode || sess.Path != "/admin" || sess.Value == "" {
		t.Fatalf("session cookie = %+v", sess)
	}
	over := c.get("/admin/")
	if over.status != http.StatusOK || strings.Contains(over.body, key) || !strings.Contains(over.header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("overview: %d, CSP %q", over.status, over.header.Get("Content-Security-Policy"))
	}
}

// TestConsoleFormsNeedCSRF: a form without the session's CSRF token, or
// sent from another origin, changes nothing.
func TestConsoleFormsNeedCSRF(t *testing.T) {
	e := mustStartConsole(t, consoleOptions{})
	key, _ := e.mustKey("op", []string{tokenbroker.ScopeAdmin}, nil)
	c := newConsoleClient(t, e)
	c.mustSignIn(key)
	e.mustLink("u1", false)
	if p := c.post("/admin/links/u1/demo/delete", url.Values{"csrf": {"forged"}}); p.status != http.StatusForbidden {
		t.Fatalf("delete with a forged token: %d", p.status)
	}
	csrf := csrfOf(t, c.get("/admin/links/u1/demo/delete"))
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/admin/links/u1/demo/delete", strings.NewReader(url.Values{"csrf": {csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if p := c.do(req); p.status != http.StatusForbidden {
		t.Fatalf("cross-site delete: %d", p.status)
	}
	if _, err := e.store.GetLink(context.Background(), "u1", "demo"); err != nil {
		t.Fatalf("the link is gone after refused forms: %v", err)
	}
	if p := c.post("/admin/links/u1/demo/delete", url.Values{"csrf": {csrf}}); p.status != http.StatusOK {
		t.Fatalf("delete with the token: %d\n%s", p.status, p.body)
	}
	if _, err := e.store.GetLink(context.Background(), "u1", "demo"); !tokenbroker.IsNotFound(err) {
		t.Fatalf("link after delete: %v", err)
	}
}

// TestConsoleSignInRateLimited: after the allowed failures a client gets
// 429 with Retry-After even with a good key, until the bucket refills; each
// failure is logged without the key's secret.
func TestConsoleSignInRateLimited(t *testing.T) {
	clock := testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	e := mustStartConsole(t, consoleOptions{now: clock.Now,
		limiter: web.NewSignInLimiter(web.SignInLimits{Burst: 3, Every: 10 * time.Second})})
	key, _ := e.mustKey("op", []string{tokenbroker.ScopeAdmin}, nil)
	c := newConsoleClient(t, e)
	wrong := key[:17] + strings.Repeat("A", len(key)-17) // the right prefix, a wrong secret
	for i := range 3 {
		if p := c.signIn(wrong); p.status != http.StatusUnauthorized {
			t.Fatalf("wrong key %d: %d", i, p.status)
		}
	}
	p := c.signIn(key)
	if p.status != http.StatusTooManyRequests || p.header.Get("Retry-After") != "10" {
		t.Fatalf("after 3 failures: %d, Retry-After %q", p.status, p.header.Get("Retry-After"))
	}
	clock.Advance(10 * time.Second)
	if p := c.signIn(key); p.status != http.StatusSeeOther {
		t.Fatalf("after the wait: %d", p.status)
	}
	logs := e.logs.String()
	if strings.Count(logs, "console sign-in failed") != 3 || !strings.Contains(logs, "key_prefix="+key[4:16]) ||
		strings.Contains(logs, wrong[17:]) || strings.Contains(logs, key[17:]) {
		t.Fatalf("log:\n%s", logs)
	}
}

// TestConsoleRevokedKeyEndsSession: a session lasts only while its key is
// valid; a key without the admin scope cannot sign in.
func TestConsoleRevokedKeyEndsSession(t *testing.T) {
	e := mustStartConsole(t, consoleOptions{})
	key, k := e.mustKey("op", []string{tokenbroker.ScopeAdmin}, nil)
	reader, _ := e.mustKey("reader", []string{tokenbroker.ScopeLinksRead}, nil)
	c := newConsoleClient(t, e)
	if p := c.signIn(reader); p.status != http.StatusUnauthorized || !strings.Contains(p.body, "admin scope") {
		t.Fatalf("links:read key: %d", p.status)
	}
	c.mustSignIn(key)
	if p := c.get("/admin/links"); p.status != http.StatusOK {
		t.Fatalf("links: %d", p.status)
	}
	if _, err := e.api.RevokeKey(context.Background(), k.ID); err != nil {
		t.Fatal(err)
	}
	if p := c.get("/admin/links"); p.status != http.StatusSeeOther || p.location() != "/admin/sign-in" {
		t.Fatalf("after revocation: %d %q", p.status, p.location())
	}
}

// TestConsoleRestrictedKey: a key restricted to some users sees neither the
// audit log nor the keys, nor other users' links.
func TestConsoleRestrictedKey(t *testing.T) {
	e := mustStartConsole(t, consoleOptions{})
	key, _ := e.mustKey("team", []string{tokenbroker.ScopeAdmin}, []string{"u1"})
	e.mustLink("u1", false)
	e.mustLink("u2", false)
	c := newConsoleClient(t, e)
	c.mustSignIn(key)
	for path, want := range map[string]int{"/admin/audit": 403, "/admin/audit/export?format=csv": 403, "/admin/keys": 403,
		"/admin/links/u2/demo": 403, "/admin/links/u2/demo/delete": 403, "/admin/links/u1/demo": 200} {
		if p := c.get(path); p.status != want {
			t.Errorf("GET %s: %d, want %d", path, p.status, want)
		}
	}
	if p := c.get("/admin/links"); !strings.Contains(p.body, `data-user="u1"`) || strings.Contains(p.body, `data-user="u2"`) {
		t.Error("restricted list shows another user's link")
	}
}

// TestConsoleAuditExport: the export keeps the filter and defuses cells a
// spreadsheet would run as formulas.
func TestConsoleAuditExport(t *testing.T) {
	e := mustStartConsole(t, consoleOptions{})
	key, _ := e.mustKey("op", []string{tokenbroker.ScopeAdmin}, nil)
	if err := e.store.AppendAudit(context.Background(), []tokenbroker.AuditEvent{
		{Actor: "system", Action: tokenbroker.AuditLinkBroken, UserID: "u1", ProviderID: "demo", Outcome: "reauth_required", Detail: "=HYPERLINK(\"x\")"},
		{Actor: "system", Action: tokenbroker.AuditLinkRefresh, UserID: "u2", ProviderID: "demo", Outcome: "ok"},
	}); err != nil {
		t.Fatal(err)
	}
	c := newConsoleClient(t, e)
	c.mustSignIn(key)
	p := c.get("/admin/audit/export?format=csv&user=u1")
	if p.status != http.StatusOK || !strings.HasPrefix(p.header.Get("Content-Type"), "text/csv") ||
		!strings.Contains(p.body, `"'=HYPERLINK(""x"")"`) || strings.Contains(p.body, "u2") {
		t.Fatalf("csv export: %d\n%s", p.status, p.body)
	}
	p = c.get("/admin/audit/export?format=jsonl&action=link.refresh")
	if lines := strings.Split(strings.TrimSpace(p.body), "\n"); p.status != http.StatusOK || len(lines) != 1 || !strings.Contains(lines[0], `"user_id":"u2"`) {
		t.Fatalf("jsonl export: %d\n%s", p.status, p.body)
	}
}

// TestConsoleAuditShowsReadCount: an aggregated token.read row shows how
// many tokens it counts, and when the first and the last were read, on
// the audit page, the link's history and in both exports.
func TestConsoleAuditShowsReadCount(t *testing.T) {
	e := mustStartConsole(t, consoleOptions{})
	key, _ := e.mustKey("op", []string{tokenbroker.ScopeAdmin}, nil)
	e.mustLink("u1", false)
	last := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	if err := e.store.AppendAudit(context.Background(), []tokenbroker.AuditEvent{
		{Time: last, FirstAt: last.Add(-800 * time.Millisecond), Count: 12345, Actor: "key:abc",
			Action: tokenbroker.AuditTokenRead, UserID: "u1", ProviderID: "demo", Outcome: "ok"},
	}); err != nil {
		t.Fatal(err)
	}
	c := newConsoleClient(t, e)
	c.mustSignIn(key)
	for _, page := range []string{"/admin/audit?action=token.read", "/admin/links/u1/demo"} {
		p := c.get(page)
		if !strings.Contains(p.body, `<td data-label="Count" class="num">12,345</td>`) ||
			!strings.Contains(p.body, "2026-05-06 07:08:08") || !strings.Contains(p.body, "2026-05-06 07:08:09") {
			t.Errorf("%s does not show the read count and its first and last read:\n%s", page, p.body)
		}
	}
	p := c.get("/admin/audit/export?format=csv&action=token.read")
	if lines := strings.Split(strings.TrimSpace(p.body), "\n"); len(lines) != 2 ||
		!strings.HasSuffix(lines[0], ",count,first_at") || !strings.HasSuffix(lines[1], ",12345,2026-05-06T07:08:08.2Z") {
		t.Errorf("csv export:\n%s", p.body)
	}
	p = c.get("/admin/audit/export?format=jsonl&action=token.read")
	if !strings.Contains(p.body, `"count":12345,"first_at":"2026-05-06T07:08:08.2Z","last_at":"2026-05-06T07:08:09Z"`) {
		t.Errorf("jsonl export:\n%s", p.body)
	}
}

// TestConsoleOverviewProviderHealth: the overview shows what the store
// records against a provider: misconfigured, and an open circuit.
func TestConsoleOverviewProviderHealth(t *testing.T) {
	e := mustStartConsole(t, consoleOptions{})
	key, _ := e.mustKey("op", []string{tokenbroker.ScopeAdmin}, nil)
	c := newConsoleClient(t, e)
	c.mustSignIn(key)
	if p := c.get("/admin/"); !strings.Contains(p.body, `data-health="ok"`) || !strings.Contains(p.body, "0 deliveries waiting") {
		t.Fatalf("a healthy provider:\n%s", p.body)
	}
	ctx := context.Background()
	if _, _, err := e.store.RecordProviderFailure(ctx, "demo", tokenbroker.ProviderFailure{Threshold: 1,
		OpenFor: time.Hour, MaxOpenFor: time.Hour, Misconfigured: "invalid_client: bad secret"}); err != nil {
		t.Fatal(err)
	}
	p := c.get("/admin/")
	if !strings.Contains(p.body, `data-health="misconfigured"`) || !strings.Contains(p.body, "invalid_client: bad secret") ||
		!strings.Contains(p.body, `data-health="circuit-open"`) {
		t.Fatalf("a misconfigured provider:\n%s", p.body)
	}
}

// TestConsoleDegradedAndIdleLinks: the overview counts degraded and idle
// links, and the list filters by those states.
func TestConsoleDegradedAndIdleLinks(t *testing.T) {
	e := mustStartConsole(t, consoleOptions{})
	key, _ := e.mustKey("op", []string{tokenbroker.ScopeAdmin}, nil)
	c := newConsoleClient(t, e)
	c.mustSignIn(key)
	ctx := context.Background()
	d := e.mustLink("deg", false)
	g, err := e.store.AcquireLease(ctx, tokenbroker.LeaseRequest{LinkID: d.ID, Generation: d.Generation, Owner: "t", TTL: time.Minute})
	if err != nil || !g.Won {
		t.Fatalf("AcquireLease = %+v, %v", g, err)
	}
	if ok, err := e.store.ReleaseLease(ctx, g.Lease, tokenbroker.Release{Class: tokenbroker.FailureUncertain, Degrade: true}, tokenbroker.Record{}); err != nil || !ok {
		t.Fatalf("ReleaseLease = %v, %v", ok, err)
	}
	i := e.mustLink("idl", false)
	if ok, err := e.store.MarkLinkIdle(ctx, i.ID, i.Generation, time.Now().Add(time.Hour), tokenbroker.Record{}); err != nil || !ok {
		t.Fatalf("MarkLinkIdle = %v, %v", ok, err)
	}
	e.mustLink("act", false)
	p := c.get("/admin/")
	for _, want := range []string{`id="total-degraded">1<`, `id="total-idle">1<`, `id="total-active">1<`, `data-state="degraded"`, `class="state state-degraded"`} {
		if !strings.Contains(p.body, want) {
			t.Fatalf("overview lacks %q:\n%s", want, p.body)
		}
	}
	for state, user := range map[string]string{"degraded": "deg", "idle": "idl"} {
		p := c.get("/admin/links?state=" + state)
		if p.status != http.StatusOK || !strings.Contains(p.body, `data-user="`+user+`"`) || strings.Contains(p.body, `data-user="act"`) {
			t.Fatalf("links?state=%s = %d:\n%s", state, p.status, p.body)
		}
		if !strings.Contains(p.body, `<option value="`+state+`" selected>`) {
			t.Fatalf("links?state=%s: the filter does not offer it selected:\n%s", state, p.body)
		}
	}
}
