package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/bench"
	"github.com/tokenbroker/tokenbroker/internal/pgtest"
	"github.com/tokenbroker/tokenbroker/store/postgres"
	"github.com/tokenbroker/tokenbroker/webhook"
)

func TestWebhooksSecret(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"webhooks", "secret"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if _, err := webhook.ParseSecret(strings.TrimSpace(out.String())); err != nil {
		t.Fatalf("printed %q: %v", out.String(), err)
	}
}

func TestProvidersCheckWebhooks(t *testing.T) {
	dir := t.TempDir()
	s1, s2 := webhook.NewSecret(), webhook.NewSecret()
	secretFile := writeFile(t, dir, "hook-secret", s1+"\n"+s2+"\n")
	cfg := writeFile(t, dir, "tokenbroker.yaml", `providers:
  - id: github
    kind: github
    client_id: Iv1.abc
webhooks:
  - id: crm
    url: https://crm.example.com/hooks?token=`+inlineSecret+`
    secret_file: `+secretFile+`
    events: [link.reauth_required, link.recovered]
  - url: http://127.0.0.1:9000/hooks
    secret: `+s2+`
`)
	code, out := runProvidersCheck(t, nil, "--config", cfg)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	assertNoSecret(t, out)
	for _, s := range []string{s1, s2, s1[6:], s2[6:]} {
		if strings.Contains(out, s) {
			t.Fatalf("the output shows a webhook secret:\n%s", out)
		}
	}
	for _, want := range []string{
		"crm       webhook", "https://crm.example.com/hooks?xxxxx", "from file " + secretFile + " (2 secrets: rotating)",
		"link.reauth_required link.recovered", "127.0.0.1:9000/hooks  webhook", "set (inline)",
		"2 webhook endpoint(s) OK",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	bad := writeFile(t, dir, "bad.yaml", `providers:
  - id: github
    kind: github
    client_id: Iv1.abc
webhooks:
  - url: http://crm.example.com/hooks
    secret: `+inlineSecret+`
    events: [link.exploded]
`)
	code, out = runProvidersCheck(t, nil, "--config", bad)
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	assertNoSecret(t, out)
	for _, want := range []string{"invalid configuration:", "webhook crm.example.com/hooks: url: must use https", "secret: secret #1: want \"whsec_\"",
		"unknown event type \"link.exploded\"", "3 invalid field(s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// Every section's errors are listed, not just the first section's.
	both := writeFile(t, dir, "both.yaml", "providers:\n  - id: github\n    kind: nope\n    client_id: x\n"+
		"webhooks:\n  - url: https://a.example/x\n    secret: nope\n")
	code, out = runProvidersCheck(t, nil, "--config", both)
	if code != 1 || !strings.Contains(out, "provider github: kind") || !strings.Contains(out, "webhook a.example/x: secret") {
		t.Fatalf("exit %d, want both sections' errors:\n%s", code, out)
	}

	unreadable := writeFile(t, dir, "unreadable.yaml", "webhooks:\n  - url: https://a.example/x\n    secret_file: "+dir+"/missing\n")
	code, out = runProvidersCheck(t, []string{"TOKENBROKER_PROVIDER_GH_KIND=github", "TOKENBROKER_PROVIDER_GH_CLIENT_ID=x"}, "--config", unreadable)
	if code != 1 || !strings.Contains(out, "secret_file: cannot read") {
		t.Fatalf("exit %d, want 1 with the unreadable file:\n%s", code, out)
	}
}

// TestWebhooksThreeReplicasOneKilledMidDelivery: three `tokenbroker serve`
// processes on one PostgreSQL deliver the outbox together. The receiver
// holds one request; the replica that sent it (the lease owner in the
// outbox) is SIGKILLed; another replica delivers that event once its lease
// ends. Every event arrives, each signature verifies, and the receiver's
// dedup by webhook-id sees each event once.
func TestWebhooksThreeReplicasOneKilledMidDelivery(t *testing.T) {
	ce := newCluster(t, fakeidp.Config{}, pgtest.NewDatabase(t), nil, crashArgs...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	secret := webhook.NewSecret()
	keys, err := webhook.ParseSecrets(secret)
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		id  string
		err error
	}
	var (
		mu       sync.Mutex
		received = make(chan got, 1000)
		held     = make(chan string, 1)
		release  = make(chan struct{})
		holding  bool
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id := r.Header.Get(webhook.HeaderID)
		received <- got{id, webhook.Verify(keys, r.Header, body, time.Now(), webhook.DefaultTolerance)}
		mu.Lock()
		hold := !holding
		holding = true
		mu.Unlock()
		if hold {
			held <- id
			<-release // the sender is killed meanwhile
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	defer close(release) // before srv.Close: a held handler must end

	cfgFile := writeFile(t, ce.dir, "tokenbroker.yaml", "webhooks:\n  - id: crm\n    url: "+srv.URL+"/hooks\n    secret: "+secret+"\n")
	env := []string{"TOKENBROKER_CONFIG=" + cfgFile, "TOKENBROKER_WEBHOOK_TIMEOUT=1s", "TOKENBROKER_WEBHOOK_POLL_INTERVAL=50ms"}
	replicas := map[string]*bench.Replica{}
	for _, name := range []string{"wh-a", "wh-b", "wh-c"} {
		replicas[name] = ce.startReplica(t, name, env...)
	}

	st, err := postgres.Open(ctx, ce.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const events = 30
	var evs []tokenbroker.Event
	for i := range events {
		evs = append(evs, tokenbroker.Event{Type: tokenbroker.EventLinkReauthRequired, UserID: fmt.Sprintf("user%02d", i),
			ProviderID: "bench", Reason: "revoked"})
	}
	if err := st.EnqueueEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}

	var heldID string
	select {
	case heldID = <-held:
	case <-ctx.Done():
		t.Fatal("no webhook request arrived")
	}
	var owner string
	if err := st.Pool().QueryRow(ctx, `SELECT lease_owner FROM webhook_outbox WHERE event_id = $1 AND endpoint = 'crm'`,
		heldID).Scan(&owner); err != nil {
		t.Fatalf("the held event's lease owner: %v", err)
	}
	victim := replicas[owner]
	if victim == nil {
		t.Fatalf("lease owner %q is no replica", owner)
	}
	victim.Kill()

	seen := map[string]int{}
	for len(seen) < events || seen[heldID] < 2 {
		select {
		case g := <-received:
			if g.err != nil {
				t.Fatalf("event %s: %v", g.id, g.err)
			}
			seen[g.id]++
		case <-ctx.Done():
			t.Fatalf("%d of %d events arrived (held %s seen %d times)", len(seen), events, heldID, seen[heldID])
		}
	}
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	// Only requests the killed replica had in flight may come again.
	if dups > webhook.DefaultConcurrency {
		t.Fatalf("%d repeated deliveries; at most the killed replica's %d in flight may repeat", dups, webhook.DefaultConcurrency)
	}
	waitOutboxEmpty(ctx, t, st)
	t.Logf("held %s (sent by %s, killed); %d repeated deliveries", heldID, owner, dups)
}
