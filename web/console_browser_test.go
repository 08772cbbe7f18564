package web_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/browsertest"
)

// shooter saves full-page screenshots of each page the test visits, at
// 1280 and 390 px wide, into the test's artifact directory: run with
// `go test ./web -run TestBrowserConsole -artifacts -outputdir DIR` to keep
// them (without -artifacts they go to a temporary directory).
type shooter struct {
	t   *testing.T
	dir string
	n   int
}

func (s *shooter) shoot(ctx context.Context, name string) {
	s.t.Helper()
	s.n++
	for _, width := range []int64{1280, 390} {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, 800)); err != nil {
			s.t.Fatalf("viewport %d: %v", width, err)
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			s.t.Fatalf("screenshot %s: %v", name, err)
		}
		file := filepath.Join(s.dir, fmt.Sprintf("%02d-%s-%d.png", s.n, name, width))
		if err := os.WriteFile(file, png, 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		s.t.Fatal(err)
	}
}

// TestBrowserConsole drives the console in headless Chromium as an
// operator would: a wrong key is refused and an admin key signs in; the
// overview's counts match the store; a link broken at fakeidp shows as
// reauth_required with its reason in the list and on its page; "create
// reconnect link" gives a URL that, opened in a second browser context
// (its own cookies), reconnects the user through fakeidp, after which the
// link is active and its history shows both events; deleting a link
// revokes its grant at fakeidp; an API key is created (its secret works
// once shown) and revoked (it stops working); sign-out ends the session;
// a key restricted to one user sees only that user's links. Every page
// is photographed at 1280 and 390 px (see shooter).
func TestBrowserConsole(t *testing.T) {
	browser := browsertest.MustStart(t, 90*time.Second)
	e := mustStartConsole(t, consoleOptions{})
	shots := &shooter{t: t, dir: t.ArtifactDir()}
	t.Logf("screenshots: %s", shots.dir)

	adminKey, _ := e.mustKey("operator", []string{tokenbroker.ScopeAdmin}, nil)
	restrictedKey, _ := e.mustKey("team-u2", []string{tokenbroker.ScopeAdmin}, []string{"u2"})
	e.mustLink("u1", true)
	u2 := e.mustLink("u2", false)
	e.mustLink("u3", false)
	e.mustBreak("u1")

	fail := func(what string, err error) {
		t.Helper()
		t.Fatalf("browser: %s: %v\nserver log:\n%s", what, err, e.logs.String())
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(browser, steps...); err != nil {
			fail(what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(browser, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			fail("read "+sel, err)
		}
		return strings.TrimSpace(s)
	}
	html := func() string {
		t.Helper()
		s, err := chromedp.Run(browser, chromedp.OuterHTML(chromedp.CSS("html")))
		if err != nil {
			fail("read the page", err)
		}
		return s
	}
	signIn := func(key string) {
		t.Helper()
		do("sign in", chromedp.Navigate(e.srv.URL+"/admin/"), chromedp.WaitVisible(chromedp.ID("key")),
			chromedp.SetValue(chromedp.ID("key"), key), chromedp.Submit(chromedp.ID("key")))
	}

	// The front door and a document it serves.
	do("front door", chromedp.Navigate(e.srv.URL+"/"), chromedp.WaitVisible(chromedp.ID("home")))
	shots.shoot(browser, "front-door")
	do("a document", chromedp.Navigate(e.srv.URL+"/docs/console.md"), chromedp.WaitVisible(chromedp.ID("doc")))
	shots.shoot(browser, "doc")

	// A wrong key is refused; the admin key signs in.
	do("open the console", chromedp.Navigate(e.srv.URL+"/admin/"), chromedp.WaitVisible(chromedp.ID("key")))
	shots.shoot(browser, "sign-in")
	signIn("tbk_aaaaaaaaaaaa_" + strings.Repeat("x", 43))
	do("wrong key refused", chromedp.WaitVisible(chromedp.CSS(`[role=alert]`)))
	if got := text(`[role=alert]`); !strings.Contains(got, "not accepted") {
		t.Fatalf("wrong key: banner %q", got)
	}
	shots.shoot(browser, "sign-in-refused")
	signIn(adminKey)
	do("overview", chromedp.WaitVisible(chromedp.ID("total-links")))

	// The overview counts what the store holds.
	counts, err := e.store.CountLinks(context.Background(), tokenbroker.LinkScope{})
	if err != nil {
		t.Fatal(err)
	}
	var total, active, reauth int64
	for _, c := range counts {
		total += c.Count
		switch c.State {
		case tokenbroker.LinkActive:
			active += c.Count
		case tokenbroker.LinkReauthRequired:
			reauth += c.Count
		}
	}
	if total != 3 || active != 2 || reauth != 1 {
		t.Fatalf("store counts %d/%d/%d, want 3 links, 2 active, 1 reauth_required", total, active, reauth)
	}
	for sel, want := range map[string]int64{"#total-links": total, "#total-active": active, "#total-reauth": reauth} {
		if got := text(sel); got != fmt.Sprint(want) {
			t.Errorf("overview %s = %q, want %d", sel, got, want)
		}
	}
	if got := text(`[data-provider=demo] tr[data-state=reauth_required][data-reauth=revoked][data-reason=invalid_grant] td.num`); got != "1" {
		t.Errorf("overview: reauth_required by invalid_grant = %q, want 1", got)
	}
	if got := text(`[data-provider=demo] tr[data-action="link.broken"] td:nth-child(2)`); got != "1" {
		t.Errorf("overview: link.broken in the last hour = %q, want 1", got)
	}
	shots.shoot(browser, "overview")

	// The broken link, in the list and on its page, with its reason.
	do("links", chromedp.Navigate(e.srv.URL+"/admin/links?state=reauth_required"), chromedp.WaitVisible(chromedp.ID("links")))
	if got := text(`#links tr[data-user=u1] .reason`); !strings.HasPrefix(got, "revoked invalid_grant") {
		t.Fatalf("list: u1's reason = %q", got)
	}
	if strings.Contains(html(), `data-user="u2"`) {
		t.Fatal("the state filter let an active link through")
	}
	do("all links", chromedp.Navigate(e.srv.URL+"/admin/links"), chromedp.WaitVisible(chromedp.CSS(`#links tr[data-user=u3]`)))
	shots.shoot(browser, "links")
	do("open u1's link", chromedp.Click(chromedp.CSS(`#links tr[data-user=u1] a`)), chromedp.WaitVisible(chromedp.ID("link-state")))
	if got := text("#link-state"); got != "reauth_required" {
		t.Fatalf("link page: state %q", got)
	}
	if got := text("#link-reason"); !strings.HasPrefix(got, "invalid_grant") {
		t.Fatalf("link page: reason %q", got)
	}
	if got := text("#link-reauth"); got != string(tokenbroker.ReasonRevoked) {
		t.Fatalf("link page: typed reason %q", got)
	}
	l1, err := e.store.GetLink(context.Background(), "u1", "demo")
	if err != nil {
		t.Fatal(err)
	}
	if page := html(); strings.Contains(page, l1.Token.AccessToken) || strings.Contains(page, l1.Token.RefreshToken) {
		t.Fatal("the link page shows a token")
	}
	shots.shoot(browser, "link-broken")

	// A reconnect link, opened in a second browser context, reconnects u1.
	do("reconnect", chromedp.Click(chromedp.CSS(`a[href$="/reconnect"]`)), chromedp.WaitVisible(chromedp.ID("confirm-form")))
	shots.shoot(browser, "reconnect-confirm")
	do("confirm reconnect", chromedp.Submit(chromedp.ID("confirm-form")), chromedp.WaitVisible(chromedp.ID("copy")))
	connectURL, err := chromedp.Run(browser, chromedp.Value(chromedp.ID("copy")))
	if err != nil || !strings.HasPrefix(connectURL, e.srv.URL+"/connect/") {
		fail("read the reconnect link "+connectURL, err)
	}
	shots.shoot(browser, "reconnect-link")
	user, cancelUser := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	defer cancelUser()
	if err := chromedp.Do(user, chromedp.Navigate(connectURL), chromedp.WaitVisible(chromedp.CSS(`button[type=submit]`)),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS(`.status-ok`))); err != nil {
		fail("reconnect in the second context", err)
	}
	cancelUser()
	do("link after reconnect", chromedp.Navigate(e.srv.URL+"/admin/links/u1/demo"), chromedp.WaitVisible(chromedp.ID("link-state")))
	if got := text("#link-state"); got != "active" {
		t.Fatalf("after reconnect: state %q", got)
	}
	for _, action := range []string{tokenbroker.AuditLinkBroken, tokenbroker.AuditLinkCreate, tokenbroker.AuditConnectSessionCreate} {
		if !strings.Contains(html(), `data-action="`+action+`"`) {
			t.Errorf("history lacks %s", action)
		}
	}
	shots.shoot(browser, "link-reconnected")

	// Delete with revocation at the provider.
	u2Refresh := u2.Token.RefreshToken
	do("open u2's link", chromedp.Navigate(e.srv.URL+"/admin/links/u2/demo"), chromedp.WaitVisible(chromedp.ID("link-state")),
		chromedp.Click(chromedp.CSS(`a[href$="/delete"]`)), chromedp.WaitVisible(chromedp.ID("confirm-form")))
	shots.shoot(browser, "delete-confirm")
	do("delete", chromedp.Submit(chromedp.ID("confirm-form")), chromedp.WaitVisible(chromedp.ID("result")))
	if got := text("#result"); !strings.Contains(got, "The provider revoked the grant") {
		t.Fatalf("delete: %q", got)
	}
	shots.shoot(browser, "deleted")
	if _, err := e.store.GetLink(context.Background(), "u2", "demo"); !tokenbroker.IsNotFound(err) {
		t.Fatalf("u2's link after delete: %v", err)
	}
	if fam, ok := e.idp.FamilyOf(u2Refresh); !ok || !fam.Revoked {
		t.Fatalf("u2's grant at fakeidp after delete: %+v, %v; want revoked", fam, ok)
	}

	// The audit log.
	do("audit log", chromedp.Navigate(e.srv.URL+"/admin/audit"), chromedp.WaitVisible(chromedp.ID("audit")))
	if !strings.Contains(html(), `data-action="link.delete"`) {
		t.Error("audit log lacks the deletion")
	}
	shots.shoot(browser, "audit")

	// An API key: created (the secret works), then revoked (it stops).
	do("keys", chromedp.Navigate(e.srv.URL+"/admin/keys"), chromedp.WaitVisible(chromedp.ID("keys")))
	shots.shoot(browser, "keys")
	do("create a key", chromedp.SetValue(chromedp.ID("name"), "ci-runner"),
		chromedp.Click(chromedp.CSS(`input[name=scope][value="tokens:read"]`)),
		chromedp.Submit(chromedp.ID("name")), chromedp.WaitVisible(chromedp.ID("copy")))
	newKey, err := chromedp.Run(browser, chromedp.Value(chromedp.ID("copy")))
	if err != nil || !strings.HasPrefix(newKey, "tbk_") {
		fail("read the new key", err)
	}
	shots.shoot(browser, "key-created")
	if code := apiStatus(t, e, newKey); code != http.StatusOK {
		t.Fatalf("new key: GET /api/v1/providers = %d", code)
	}
	prefix := newKey[4:16]
	do("revoke the key", chromedp.Navigate(e.srv.URL+"/admin/keys"),
		chromedp.Click(chromedp.CSS(`tr[data-prefix="`+prefix+`"] a`)), chromedp.WaitVisible(chromedp.ID("confirm-form")))
	shots.shoot(browser, "key-revoke-confirm")
	do("confirm revocation", chromedp.Submit(chromedp.ID("confirm-form")), chromedp.WaitVisible(chromedp.ID("result")))
	if code := apiStatus(t, e, newKey); code != http.StatusUnauthorized {
		t.Fatalf("revoked key: GET /api/v1/providers = %d", code)
	}

	// Sign out: the console asks for a key again.
	do("sign out", chromedp.Click(chromedp.CSS(`.signout button`)), chromedp.WaitVisible(chromedp.ID("key")),
		chromedp.Navigate(e.srv.URL+"/admin/links"), chromedp.WaitVisible(chromedp.ID("key")))

	// A key restricted to u2 sees only u2 (whose link was deleted: none)
	// and then, once u2 links again, only that link.
	e.mustLink("u2", false)
	signIn(restrictedKey)
	do("restricted overview", chromedp.WaitVisible(chromedp.ID("total-links")))
	if got := text("#total-links"); got != "1" {
		t.Fatalf("restricted overview: %s links, want 1", got)
	}
	if strings.Contains(html(), `id="webhooks"`) {
		t.Fatal("restricted overview shows the webhook outbox of every user")
	}
	shots.shoot(browser, "overview-restricted")
	do("restricted list", chromedp.Navigate(e.srv.URL+"/admin/links"), chromedp.WaitVisible(chromedp.ID("links")))
	page := html()
	if !strings.Contains(page, `data-user="u2"`) || strings.Contains(page, `data-user="u1"`) || strings.Contains(page, `data-user="u3"`) {
		t.Fatal("restricted list shows other users' links")
	}
	if strings.Contains(page, "/admin/audit") || strings.Contains(page, "/admin/keys") {
		t.Error("restricted key's navigation offers the audit log or the keys")
	}
	do("another user's link", chromedp.Navigate(e.srv.URL+"/admin/links/u3/demo"), chromedp.WaitVisible(chromedp.ID("error-code")))
	if got := text("#error-code"); got != tokenbroker.EFORBIDDEN {
		t.Fatalf("restricted key on u3's link: %q", got)
	}
	shots.shoot(browser, "forbidden")
}

// apiStatus is the status of GET /api/v1/providers with key.
func apiStatus(t *testing.T, e *consoleEnv, key string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/api/v1/providers", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
