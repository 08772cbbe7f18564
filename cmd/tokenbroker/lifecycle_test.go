package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/client"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/bench"
	"github.com/tokenbroker/tokenbroker/internal/pgtest"
	"github.com/tokenbroker/tokenbroker/store/postgres"
	"github.com/tokenbroker/tokenbroker/webhook"
)

// TestBackgroundRefreshOnThreeReplicas: three replicas with the background
// refresher on (as serve runs by default) and 200 links that enter their
// refresh-ahead window: the replicas' refreshers, scanning at once, refresh
// each link exactly once (fakeidp counts the calls per token family), break
// none, and callers then get the new tokens without any provider call.
func TestBackgroundRefreshOnThreeReplicas(t *testing.T) {
	multiProcess(t)
	start0 := time.Now()
	var calls atomic.Int64
	allCalled := make(chan struct{})
	const links = 200
	lr := startReplicaSet(t, 3, fakeidp.Config{OnRequest: func(endpoint string) {
		if endpoint == "token" && calls.Add(1) == links {
			close(allCalled)
		}
	}}, pgtest.NewDatabase(t), []string{
		"TOKENBROKER_BACKGROUND_REFRESH=true",
		"TOKENBROKER_BACKGROUND_REFRESH_INTERVAL=300ms",
		"TOKENBROKER_PROVIDER_BENCH_REFRESH_AHEAD=2m",
	})
	// The links are imported valid for 4 s: their window is half their
	// lifetime (2 s), so the scans find them due 2 s after the import.
	soon := time.Now().Add(4 * time.Second)
	families := map[string]string{}
	for i := range links {
		u := fmt.Sprintf("bg%03d", i)
		tok, err := lr.idp.IssueToken(u)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lr.clients[i%3].ImportLink(context.Background(), u, "bench",
			client.ImportRequest{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: "Bearer", Expiry: &soon}); err != nil {
			t.Fatal(err)
		}
		families[u] = tok.Family
	}
	select {
	case <-allCalled:
	case <-time.After(60 * time.Second):
		t.Fatalf("%d of %d links refreshed in the background within a minute", calls.Load(), links)
	}
	st, err := postgres.Open(context.Background(), lr.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// The commits follow the provider's answers; their rows have no event
	// the test can wait for.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM links WHERE generation = 2 AND state = 'active'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == links {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d links at generation 2", n, links)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("200 links refreshed in the background %v after the test started", time.Since(start0).Round(time.Millisecond))
	// A few more scans of every replica find nothing due.
	time.Sleep(time.Second)
	stats := lr.idp.Stats()
	for u, fam := range families {
		if n := stats.Families[fam].RefreshCalls; n != 1 {
			t.Errorf("%s: %d provider refresh calls, want exactly 1", u, n)
		}
	}
	if stats.ReuseDetections != 0 || stats.RefreshCalls != links {
		t.Fatalf("provider: %d refresh calls for %d links, %d reuse detections", stats.RefreshCalls, links, stats.ReuseDetections)
	}
	for i, u := range []string{"bg000", "bg100", "bg199"} {
		tok, err := lr.clients[i].Token(context.Background(), u, "bench", 0)
		if err != nil || tok.AccessToken == "" {
			t.Fatalf("%s: %v", u, err)
		}
	}
	if n := lr.idp.Stats().RefreshCalls; n != links {
		t.Fatalf("callers after the background refresh caused %d provider calls", n-links)
	}
	for _, r := range lr.replicas {
		_, body := get(t, context.Background(), r.URL+"/metrics")
		if !containsLine(body, "tokenbroker_refresher_lag_seconds 0") || !containsLine(body, `tokenbroker_links{provider="bench",state="active"} 200`) {
			t.Errorf("%s /metrics: no zero lag or 200 active links:\n%.3000s", r.Name, body)
		}
	}
}

// containsLine reports whether body has line as one of its lines.
func containsLine(body, line string) bool {
	return slices.Contains(strings.Split(body, "\n"), line)
}

// hookReceiver is a webhook receiver as docs/webhooks.md asks for one: it
// verifies every signature, and handles each webhook-id once (a repeat is
// acknowledged and dropped). It can hold the first request of one event
// type until released.
type hookReceiver struct {
	t    *testing.T
	keys [][]byte
	srv  *httptest.Server

	mu       sync.Mutex
	seen     map[string]int // requests per webhook-id
	handled  []webhook.Payload
	holdType tokenbroker.EventType
	held     chan string // the held request's webhook-id
	release  chan struct{}
	arrived  chan struct{}
}

func newHookReceiver(t *testing.T, secret string, hold tokenbroker.EventType) *hookReceiver {
	keys, err := webhook.ParseSecrets(secret)
	if err != nil {
		t.Fatal(err)
	}
	h := &hookReceiver{t: t, keys: keys, seen: map[string]int{}, holdType: hold,
		held: make(chan string, 1), release: make(chan struct{}), arrived: make(chan struct{}, 100)}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	t.Cleanup(func() { close(h.release) }) // before the server closes: a held handler ends
	return h
}

func (h *hookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := webhook.Verify(h.keys, r.Header, body, time.Now(), webhook.DefaultTolerance); err != nil {
		h.t.Errorf("a webhook request failed verification: %v", err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var p webhook.Payload
	if err := json.Unmarshal(body, &p); err != nil {
		h.t.Errorf("webhook body %q: %v", body, err)
		return
	}
	id := r.Header.Get(webhook.HeaderID)
	h.mu.Lock()
	h.seen[id]++
	first := h.seen[id] == 1
	if first {
		h.handled = append(h.handled, p)
	}
	hold := first && p.Type == h.holdType
	if hold {
		h.holdType = "" // only the first of its type
	}
	h.mu.Unlock()
	select {
	case h.arrived <- struct{}{}:
	default:
	}
	if hold {
		h.held <- id
		<-h.release // the replica that sent it is killed meanwhile
	}
	w.WriteHeader(http.StatusNoContent)
}

// events lists "type/user/reason" of the events handled (each id once), in
// the order they first arrived.
func (h *hookReceiver) events() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, p := range h.handled {
		out = append(out, string(p.Type)+"/"+p.Data.UserID+"/"+p.Data.Reason)
	}
	return out
}

func (h *hookReceiver) requests(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seen[id]
}

// waitFor waits until ok holds for the handled events, woken by each
// request.
func (h *hookReceiver) waitFor(ctx context.Context, what string, ok func(events []string) bool) {
	h.t.Helper()
	for !ok(h.events()) {
		select {
		case <-h.arrived:
		case <-ctx.Done():
			h.t.Fatalf("waiting for %s: events handled %q", what, h.events())
		}
	}
}

// TestWebhooksForRevokedThenReconnectedLink: three replicas deliver the
// outbox together. A link is connected, its grant revoked at the provider
// (a token request marks it reauth_required), and connected again. The
// receiver verifies every signature and handles link.created,
// link.reauth_required (reason revoked) and link.recovered, each once and
// in that order, although the replica delivering link.reauth_required was
// SIGKILLed while the receiver held that request (another replica delivers
// it again once the dead one's claim ends; the receiver drops the repeat
// by its webhook-id).
func TestWebhooksForRevokedThenReconnectedLink(t *testing.T) {
	multiProcess(t)
	secret := webhook.NewSecret()
	hooks := newHookReceiver(t, secret, tokenbroker.EventLinkReauthRequired)
	cfgFile := writeFile(t, t.TempDir(), "tokenbroker.yaml", "webhooks:\n  - id: crm\n    url: "+hooks.srv.URL+"/hooks\n    secret: "+secret+"\n")
	lr := startReplicaSet(t, 3, fakeidp.Config{}, pgtest.NewDatabase(t), []string{"TOKENBROKER_CONFIG=" + cfgFile,
		"TOKENBROKER_WEBHOOK_TIMEOUT=1s", "TOKENBROKER_WEBHOOK_POLL_INTERVAL=50ms"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	connect := func(via *client.Client) *fakeidp.Token {
		t.Helper()
		tok, err := lr.idp.IssueToken("alice")
		if err != nil {
			t.Fatal(err)
		}
		past := time.Now().Add(-time.Minute)
		if _, err := via.ImportLink(ctx, "alice", "bench", client.ImportRequest{AccessToken: tok.AccessToken,
			RefreshToken: tok.RefreshToken, TokenType: "Bearer", Expiry: &past}); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tok := connect(lr.clients[1])
	hooks.waitFor(ctx, "link.created", func(evs []string) bool { return len(evs) == 1 })

	lr.idp.RevokeFamilyOf(tok.RefreshToken)
	_, err := lr.clients[0].Token(ctx, "alice", "bench", 0)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != tokenbroker.EREAUTHREQUIRED {
		t.Fatalf("token of a revoked grant: %v, want reauth_required", err)
	}
	var heldID string
	select {
	case heldID = <-hooks.held:
	case <-ctx.Done():
		t.Fatalf("link.reauth_required was not delivered; events %q", hooks.events())
	}
	st, err := postgres.Open(ctx, lr.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var owner string
	if err := st.Pool().QueryRow(ctx, `SELECT lease_owner FROM webhook_outbox WHERE event_id = $1 AND endpoint = 'crm'`,
		heldID).Scan(&owner); err != nil {
		t.Fatalf("the held delivery's lease owner: %v", err)
	}
	var victim *bench.Replica
	survivor := -1
	for i, r := range lr.replicas {
		if r.Name == owner {
			victim = r
		} else {
			survivor = i
		}
	}
	if victim == nil {
		t.Fatalf("lease owner %q is no replica", owner)
	}
	victim.Kill()
	// Another replica delivers it again once the dead one's claim ends.
	for hooks.requests(heldID) < 2 {
		select {
		case <-hooks.arrived:
		case <-ctx.Done():
			t.Fatalf("the held event was not delivered again after %s was killed", owner)
		}
	}

	connect(lr.clients[survivor]) // the user connects again, through a replica still alive
	hooks.waitFor(ctx, "link.recovered", func(evs []string) bool { return len(evs) == 3 })
	want := []string{"link.created/alice/", "link.reauth_required/alice/revoked", "link.recovered/alice/reauth_required"}
	if got := hooks.events(); !slices.Equal(got, want) {
		t.Fatalf("events handled %q, want %q", got, want)
	}
	waitOutboxEmpty(ctx, t, st)
	t.Logf("link.reauth_required %s held, its sender %s killed, delivered again by another replica", heldID, owner)
}
