package web_test

import (
	"database/sql"
	"encoding/base64"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	_ "modernc.org/sqlite" // the driver store/sqlite uses, to seed in bulk

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/store/sqlite"
)

var benchLinks = flag.String("console-links", "1000,100000", "BenchmarkConsolePages: comma-separated store sizes")

// seedConsole writes n links (users u0000000.., provider demo, every
// seventh reauth_required with one of three reasons) and, per link, one
// token.read and, for every tenth, a link.refresh audit event within the
// last day, straight into e's SQLite file: the sealed token columns hold
// a placeholder the console never reads.
func seedConsole(tb testing.TB, e *consoleEnv, n int) {
	tb.Helper()
	path := e.store.(interface{ Unwrap() tokenbroker.Store }).Unwrap().(*sqlite.Store).Path()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	for _, q := range []struct {
		sql  string
		args []any
	}{{`
		WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < ?)
		INSERT INTO links (user_id, provider_id, account_login, access_token, refresh_token, expiry, state, failure_reason, created_at, updated_at)
		SELECT printf('u%07d', i), 'demo', 'login' || i, 'sealed', 'sealed', CAST(unixepoch('subsec') * 1000 AS INTEGER) + 3600000,
			CASE WHEN i % 7 = 0 THEN 'reauth_required' ELSE 'active' END,
			CASE WHEN i % 7 = 0 THEN (CASE i % 3 WHEN 0 THEN 'invalid_grant: revoked' WHEN 1 THEN 'bad_refresh_token' ELSE 'lost refresh: holder died' END) ELSE '' END,
			CAST(unixepoch('subsec') * 1000 AS INTEGER), CAST(unixepoch('subsec') * 1000 AS INTEGER)
		FROM seq`, []any{n}}, {`
		WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < ?)
		INSERT INTO audit_events (time, actor, action, user_id, provider_id, outcome)
		SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) - (? - i) * 800,
			'key:bench', CASE WHEN i % 10 = 0 THEN 'link.refresh' ELSE 'token.read' END, printf('u%07d', i), 'demo', 'ok'
		FROM seq`, []any{n, n}}} {
		if _, err := db.Exec(q.sql, q.args...); err != nil {
			tb.Fatalf("seed: %v", err)
		}
	}
	if _, err := db.Exec(`ANALYZE`); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkConsolePages loads each console page over HTTP (loopback, the
// whole handler chain, a signed-in session) with 1,000 and with 100,000
// links in the store, side by side: the ratio shows what the store's size
// costs each page. docs/benchmarks.md has the figures.
//
//	go test ./web -run '^$' -bench ConsolePages -benchtime 200x
//
// -console-links sets the store sizes (default 1000,100000).
func BenchmarkConsolePages(b *testing.B) {
	var sizes []int
	for _, s := range strings.Split(*benchLinks, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 2 {
			b.Fatalf("-console-links: %q is not a number of links", s)
		}
		sizes = append(sizes, n)
	}
	for _, n := range sizes {
		e := mustStartConsole(b, consoleOptions{})
		seedConsole(b, e, n)
		key, _ := e.mustKey("bench", []string{tokenbroker.ScopeAdmin}, nil)
		c := newConsoleClient(b, e)
		c.mustSignIn(key)
		mid := fmt.Sprintf("u%07d", n/2)
		after := url.Values{"after": {encodeCursorForTest(mid, "demo")}}.Encode()
		for _, pg := range []struct{ name, path string }{
			{"overview", "/admin/"},
			{"links", "/admin/links"},
			{"links-middle-page", "/admin/links?" + after},
			{"links-reauth", "/admin/links?state=reauth_required"},
			{"links-reason", "/admin/links?reason=bad_refresh_token"},
			{"links-search", "/admin/links?q=" + mid[:6]},
			{"link", "/admin/links/" + mid + "/demo"},
			{"audit", "/admin/audit"},
			{"audit-user", "/admin/audit?user=" + mid},
		} {
			b.Run(fmt.Sprintf("links=%d/%s", n, pg.name), func(b *testing.B) {
				for b.Loop() {
					if p := c.get(pg.path); p.status != http.StatusOK {
						b.Fatalf("%s: status %d\n%s", pg.path, p.status, p.body)
					}
				}
			})
		}
	}
}

// encodeCursorForTest is the console's page position after (user, provider).
func encodeCursorForTest(user, provider string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(user + "\x00" + provider))
}
