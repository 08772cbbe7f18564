package web_test

import (
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// consoleClient is a browser without JavaScript: a cookie jar, forms
// posted by hand, redirects not followed.
type consoleClient struct {
	tb testing.TB
	e  *consoleEnv
	c  *http.Client
}

func newConsoleClient(tb testing.TB, e *consoleEnv) *consoleClient {
	jar, _ := cookiejar.New(nil)
	return &consoleClient{tb: tb, e: e, c: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (c *consoleClient) do(req *http.Request) page {
	c.tb.Helper()
	resp, err := c.c.Do(req)
	if err != nil {
		c.tb.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.tb.Fatal(err)
	}
	return page{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

func (c *consoleClient) get(path string) page {
	c.tb.Helper()
	req, err := http.NewRequest(http.MethodGet, c.e.srv.URL+path, nil)
	if err != nil {
		c.tb.Fatal(err)
	}
	return c.do(req)
}

func (c *consoleClient) post(path string, form url.Values) page {
	c.tb.Helper()
	req, err := http.NewRequest(http.MethodPost, c.e.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		c.tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req)
}

var consoleCSRFRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the first CSRF token on p.
func csrfOf(tb testing.TB, p page) string {
	tb.Helper()
	m := consoleCSRFRe.FindStringSubmatch(p.body)
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
