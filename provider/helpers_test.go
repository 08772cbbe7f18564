package provider

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testNow is the injected clock of every test.
var testNow = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return testNow }

// fixture is a recorded answer under testdata/.
type fixture struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    json.RawMessage   `json:"body"`
}

// MustFixture loads testdata/<name>.json.
func MustFixture(tb testing.TB, name string) fixture {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		tb.Fatal(err)
	}
	var f fixture
	if err := json.Unmarshal(b, &f); err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return f
}

func (f fixture) write(w http.ResponseWriter) {
	for k, v := range f.Headers {
		w.Header().Set(k, v)
	}
	w.WriteHeader(f.Status)
	var s string
	if json.Unmarshal(f.Body, &s) == nil {
		io.WriteString(w, s) // a string body is sent as is
		return
	}
	w.Write(f.Body)
}

// recorded is one request a replay server received.
type recorded struct {
	Method, Path string
	Query        url.Values
	Form         url.Values
	Body         string
	BasicUser    string
	BasicPass    string
	HasBasic     bool
	Auth         string
	Accept       string
}

// replay is a loopback server that answers "METHOD /path" with fixtures and
// records every request.
type replay struct {
	*httptest.Server
	mu     sync.Mutex
	routes map[string]fixture
	reqs   []recorded
}

// MustReplay starts a replay server, closed when the test ends.
func MustReplay(tb testing.TB) *replay {
	tb.Helper()
	r := &replay{routes: map[string]fixture{}}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	tb.Cleanup(r.Close)
	return r
}

func (r *replay) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	rec := recorded{Method: req.Method, Path: req.URL.Path, Query: req.URL.Query(), Body: string(body),
		Auth: req.Header.Get("Authorization"), Accept: req.Header.Get("Accept")}
	rec.BasicUser, rec.BasicPass, rec.HasBasic = req.BasicAuth()
	if strings.HasPrefix(req.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		rec.Form, _ = url.ParseQuery(string(body))
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, rec)
	f, ok := r.routes[req.Method+" "+req.URL.Path]
	r.mu.Unlock()
	if !ok {
		http.Error(w, "no fixture for "+req.Method+" "+req.URL.Path, http.StatusNotFound)
		return
	}
	f.write(w)
}

// answer makes the server answer method+path with a fixture.
func (r *replay) answer(tb testing.TB, method, path, name string) {
	tb.Helper()
	f := MustFixture(tb, name)
	r.mu.Lock()
	r.routes[method+" "+path] = f
	r.mu.Unlock()
}

// requests returns the requests to method+path.
func (r *replay) requests(method, path string) []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recorded
	for _, q := range r.reqs {
		if q.Method == method && q.Path == path {
			out = append(out, q)
		}
	}
	return out
}

// only returns the one request to method and path, and fails t unless
// there was exactly one.
func (r *replay) only(t *testing.T, method, path string) recorded {
	t.Helper()
	reqs := r.requests(method, path)
	if len(reqs) != 1 {
		t.Fatalf("%d requests to %s %s, want exactly 1", len(reqs), method, path)
	}
	return reqs[0]
}

// testOptions are the options of a provider under test, with client c.
func testOptions(c *http.Client) Options {
	return Options{
		HTTPClient: c,
		Now:        fixedNow,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// MustNew builds a provider with the test clock and client c.
func MustNew(tb testing.TB, pc ProviderConfig, c *http.Client) *oauthProvider {
	tb.Helper()
	p, err := newProvider(context.Background(), pc, testOptions(c))
	if err != nil {
		tb.Fatalf("New(%s): %v", pc.ID, err)
	}
	return p
}
