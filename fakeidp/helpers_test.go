package fakeidp_test

import (
	"context"
	"encoding/json"
	"html"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/testclock"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// NewClock returns a manual clock for Config.Now at a fixed instant.
func NewClock() *testclock.Clock { return testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) }

// MustStart starts a server for cfg on loopback and closes it when the
// test ends. A nil Rand becomes a seeded deterministic source.
func MustStart(tb testing.TB, cfg fakeidp.Config) *fakeidp.Server {
	tb.Helper()
	if cfg.Rand == nil {
		cfg.Rand = rand.NewChaCha8([32]byte{1, 2, 3})
	}
	s, err := fakeidp.Start(cfg)
	if err != nil {
		tb.Fatalf("fakeidp.Start: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Resp is a decoded answer.
type Resp struct {
	Status int
	Header http.Header
	Body   string
	JSON   map[string]any
	Form   url.Values
}

// Str returns a JSON (or form) member as a string.
func (r Resp) Str(k string) string {
	if r.JSON != nil {
		if v, ok := r.JSON[k].(string); ok {
			return v
		}
		return ""
	}
	return r.Form.Get(k)
}

// reqOpt changes a request before it is sent.
type reqOpt func(*http.Request)

func withBasic(id, secret string) reqOpt {
	return func(r *http.Request) { r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret)) }
}

func withHeader(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }

// noRedirects is a client that returns redirects instead of following
// them, like a test driving a browser step by step.
var noRedirects = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       10 * time.Second,
}

// Do sends req and decodes the answer.
func Do(tb testing.TB, req *http.Request) Resp {
	tb.Helper()
	resp, err := noRedirects.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("reading %s: %v", req.URL.Path, err)
	}
	r := Resp{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
	switch ct := resp.Header.Get("Content-Type"); {
	case strings.HasPrefix(ct, "application/json"):
		if err := json.Unmarshal(b, &r.JSON); err != nil {
			tb.Fatalf("decoding %s: %v: %s", req.URL.Path, err, b)
		}
	case strings.HasPrefix(ct, "application/x-www-form-urlencoded"):
		r.Form, _ = url.ParseQuery(string(b))
	}
	return r
}

// MustPost posts form to the server's path.
func MustPost(tb testing.TB, s *fakeidp.Server, path string, form url.Values, opts ...reqOpt) Resp {
	tb.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, s.URL()+path, strings.NewReader(form.Encode()))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, o := range opts {
		o(req)
	}
	return Do(tb, req)
}

// MustGet gets a URL (absolute, or a path on s).
func MustGet(tb testing.TB, s *fakeidp.Server, u string, opts ...reqOpt) Resp {
	tb.Helper()
	if strings.HasPrefix(u, "/") {
		u = s.URL() + u
	}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for _, o := range opts {
		o(req)
	}
	return Do(tb, req)
}

// defaultAuth authenticates as the default client with HTTP Basic.
var defaultAuth = withBasic(fakeidp.DefaultClientID, fakeidp.DefaultClientSecret)

// Refresh presents a refresh token with the default client.
func Refresh(tb testing.TB, s *fakeidp.Server, rt string, opts ...reqOpt) Resp {
	tb.Helper()
	return MustPost(tb, s, fakeidp.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}},
		append([]reqOpt{defaultAuth}, opts...)...)
}

// Userinfo asks who an access token belongs to.
func Userinfo(tb testing.TB, s *fakeidp.Server, at string) Resp {
	tb.Helper()
	return MustGet(tb, s, fakeidp.PathUserinfo, withHeader("Authorization", "Bearer "+at))
}

// MustIssue mints a family for user.
func MustIssue(tb testing.TB, s *fakeidp.Server, user string, scopes ...string) *fakeidp.Token {
	tb.Helper()
	tok, err := s.IssueToken(user, scopes...)
	if err != nil {
		tb.Fatalf("IssueToken: %v", err)
	}
	return tok
}

// wantStatus fails unless r has the status.
func wantStatus(tb testing.TB, r Resp, status int) {
	tb.Helper()
	if r.Status != status {
		tb.Fatalf("status = %d, want %d; body: %s", r.Status, status, r.Body)
	}
}

// wantError fails unless r is an error answer with status and code.
func wantError(tb testing.TB, r Resp, status int, code string) {
	tb.Helper()
	wantStatus(tb, r, status)
	if got := r.Str("error"); got != code {
		tb.Fatalf("error = %q, want %q; body: %s", got, code, r.Body)
	}
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)

// formFields returns the hidden fields of an HTML page's form, as a
// browser would submit them.
func formFields(page string) url.Values {
	v := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(page, -1) {
		v.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	return v
}

// location parses the Location header of a redirect.
func location(tb testing.TB, r Resp) *url.URL {
	tb.Helper()
	if r.Status != http.StatusFound {
		tb.Fatalf("status = %d, want 302; body: %s", r.Status, r.Body)
	}
	u, err := url.Parse(r.Header.Get("Location"))
	if err != nil {
		tb.Fatalf("Location: %v", err)
	}
	return u
}
