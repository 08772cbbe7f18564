package web_test

import (
	"html"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// consoleClient is a browser without JavaScript (a cookie jar, forms
// posted by hand, redirects not followed) on the console's paths.
type consoleClient struct {
	*browser
	e *consoleEnv
}

func newConsoleClient(tb testing.TB, e *consoleEnv) *consoleClient {
	b := newBrowser(tb)
	b.c.Timeout = 30 * time.Second
	return &consoleClient{browser: b, e: e}
}

// get fetches path on the console's server.
func (c *consoleClient) get(path string) page {
	c.tb.Helper()
	return c.browser.get(c.e.srv.URL + path)
}

// post posts form to path on the console's server.
func (c *consoleClient) post(path string, form url.Values) page {
	c.tb.Helper()
	return c.browser.post(c.e.srv.URL+path, form)
}

// csrf returns the first CSRF token on p.
func csrfOf(tb testing.TB, p page) string {
	tb.Helper()
	m := csrfRe.FindStringSubmatch(p.body)
	if m == nil {
		tb.Fatalf("no CSRF token on the page (status %d):\n%s", p.status, p.body)
	}
	return html.UnescapeString(m[1])
}

// signIn posts key to the sign-in form and returns the answer.
func (c *consoleClient) signIn(key string) page {
	c.tb.Helper()
	form := c.get("/admin/sign-in")
	return c.post("/admin/sign-in", url.Values{"csrf": {csrfOf(c.tb, form)}, "key": {key}})
}

func (c *consoleClient) mustSignIn(key string) {
	c.tb.Helper()
	if p := c.signIn(key); p.status != http.StatusSeeOther {
		c.tb.Fatalf("sign in: status %d\n%s", p.status, p.body)
	}
}
