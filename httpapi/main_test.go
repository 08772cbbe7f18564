package httpapi_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apiv1"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/httpapi"
	"github.com/tokenbroker/tokenbroker/httpapi/httpapitest"
)

// logs captures every log line written during the whole test package; every
// Env logs into it. TestMain fails the package if any line holds a token,
// a key or a key secret.
var logs = httpapitest.NewLogCapture()

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 && len(logs.Lines()) == 0 && flag.Lookup("test.run").Value.String() == "" {
		// The whole package ran and nothing was logged: the secret check
		// of AfterRun would prove nothing.
		fmt.Fprintln(os.Stderr, "FAIL: no log line captured: the secret check proved nothing")
		code = 1
	}
	os.Exit(httpapitest.AfterRun(code, logs))
}

// MustEnv starts a test environment logging into the package's capture.
func MustEnv(tb testing.TB, opts ...httpapitest.Options) *httpapitest.Env {
	tb.Helper()
	var o httpapitest.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	o.Logs = logs
	return httpapitest.MustStart(tb, o)
}

// MustProblem checks that a response is a problem document with status and
// code, and returns it.
func MustProblem(tb testing.TB, resp *http.Response, body []byte, status int, code string) apiv1.Problem {
	tb.Helper()
	if resp.StatusCode != status {
		tb.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		tb.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	var p apiv1.Problem
	if err := json.Unmarshal(body, &p); err != nil {
		tb.Fatalf("problem body: %v: %s", err, body)
	}
	if p.Code != code || p.Status != status || p.Type != httpapi.ProblemTypePrefix+code || p.Title == "" {
		tb.Fatalf("problem %+v, want code %s status %d", p, code, status)
	}
	return p
}

// MustDecode decodes a JSON body into v after checking the status.
func MustDecode(tb testing.TB, resp *http.Response, body []byte, status int, v any) {
	tb.Helper()
	if resp.StatusCode != status {
		tb.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		tb.Fatalf("decode %T: %v: %s", v, err, body)
	}
}

// snapshot is everything a bad request must leave unchanged.
type snapshot struct {
	Links    map[string][]tokenbroker.Link
	Keys     []tokenbroker.APIKey
	Sessions int
}

// MustSnapshot reads the links of users and every API key.
func MustSnapshot(tb testing.TB, env *httpapitest.Env, users ...string) string {
	tb.Helper()
	ctx := context.Background()
	s := snapshot{Links: map[string][]tokenbroker.Link{}}
	for _, u := range users {
		ls, err := env.Store.ListLinks(ctx, u)
		if err != nil {
			tb.Fatal(err)
		}
		for _, l := range ls {
			s.Links[u] = append(s.Links[u], *l)
		}
	}
	keys, err := env.Store.ListAPIKeys(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	for _, k := range keys {
		s.Keys = append(s.Keys, *k)
	}
	b, err := json.Marshal(s)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// MustAudit flushes the auditor and returns the events matching f.
func MustAudit(tb testing.TB, env *httpapitest.Env, f tokenbroker.AuditFilter) []tokenbroker.AuditEvent {
	tb.Helper()
	ctx := context.Background()
	if err := env.Auditor.Flush(ctx); err != nil {
		tb.Fatal(err)
	}
	evs, err := env.Store.ListAudit(ctx, f)
	if err != nil {
		tb.Fatal(err)
	}
	return evs
}

// MustBreakLink revokes the token family of issued at fakeidp and moves
// the clock past its access token's lifetime: the next token request
// refreshes, is refused, and finds the link in need of a new connection.
func MustBreakLink(tb testing.TB, env *httpapitest.Env, issued *fakeidp.Token) {
	tb.Helper()
	if !env.IDP.RevokeFamilyOf(issued.RefreshToken) {
		tb.Fatal("fakeidp does not know the token family")
	}
	env.Clock.Advance(fakeidp.DefaultAccessTokenTTL + time.Minute)
}

func path(parts ...string) string { return "/api/v1/" + strings.Join(parts, "/") }
