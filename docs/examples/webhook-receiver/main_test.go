package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/testdb"
	"github.com/tokenbroker/tokenbroker/store/storetest"
	"github.com/tokenbroker/tokenbroker/webhook"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The example receiver accepts what tokenbroker's dispatcher sends, during
// a secret rotation too, and hands each event to Handle once.
func TestReceiverAcceptsTokenbrokersDeliveries(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	oldSecret, newSecret := webhook.NewSecret(), webhook.NewSecret()
	receiverKeys, err := ParseSecrets(oldSecret) // the receiver has not switched yet
	if err != nil {
		t.Fatal(err)
	}
	handled := make(chan Event, 10)
	rv := &Receiver{Keys: receiverKeys, Now: time.Now, Handle: func(ev Event) error { handled <- ev; return nil }}
	srv := httptest.NewServer(rv)
	defer srv.Close()

	st := testdb.SQLite(t)
	eps, err := webhook.Config{Webhooks: []webhook.EndpointConfig{
		{ID: "example", URL: srv.URL, Secret: newSecret + " " + oldSecret},
	}}.Endpoints()
	if err != nil {
		t.Fatal(err)
	}
	d, err := webhook.New(st, eps, webhook.Options{Owner: "test", PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	defer d.Close()
	storetest.MustEnqueue(t, st, tokenbroker.Event{Type: tokenbroker.EventLinkReauthRequired,
		UserID: "alice", ProviderID: "github", Reason: "revoked"})
	select {
	case ev := <-handled:
		if ev.Type != "link.reauth_required" || ev.Data.UserID != "alice" || ev.Data.Reason != "revoked" || ev.Data.EventID == "" {
			t.Fatalf("handled %+v", ev)
		}
	case <-ctx.Done():
		t.Fatal("the receiver handled nothing")
	}
}

func signed(t *testing.T, secret, id string, ts time.Time, body string) *http.Request {
	t.Helper()
	keys, err := webhook.ParseSecrets(secret)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	r.Header.Set("webhook-id", id)
	r.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	r.Header.Set("webhook-signature", webhook.Sign(keys, id, ts, []byte(body)))
	return r
}

func TestReceiverRefuses(t *testing.T) {
	secret := webhook.NewSecret()
	keys, _ := ParseSecrets(secret)
	now := time.Now()
	var mu sync.Mutex
	n := 0
	rv := &Receiver{Keys: keys, Now: func() time.Time { return now }, Handle: func(Event) error {
		mu.Lock()
		n++
		mu.Unlock()
		return nil
	}}
	body := `{"type":"link.created","timestamp":"2026-01-01T00:00:00Z","data":{"event_id":"msg_1","user_id":"alice","provider_id":"github"}}`
	serve := func(r *http.Request) int {
		w := httptest.NewRecorder()
		rv.ServeHTTP(w, r)
		return w.Code
	}
	if code := serve(signed(t, secret, "msg_1", now, body)); code != http.StatusNoContent {
		t.Fatalf("good request: %d", code)
	}
	if code := serve(signed(t, secret, "msg_1", now, body)); code != http.StatusNoContent || n != 1 {
		t.Fatalf("repeat: %d, handled %d times; want 204 and once", code, n)
	}
	tampered := signed(t, secret, "msg_2", now, body)
	tampered.Body = io.NopCloser(strings.NewReader(strings.Replace(body, "alice", "mallory", 1)))
	for name, r := range map[string]*http.Request{
		"other secret": signed(t, webhook.NewSecret(), "msg_2", now, body),
		"tampered":     tampered,
		"old":          signed(t, secret, "msg_2", now.Add(-10*time.Minute), body),
		"no headers":   httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body)),
	} {
		if code := serve(r); code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, code)
		}
	}
	if n != 1 {
		t.Fatalf("handled %d events, want 1", n)
	}
	if _, err := ParseSecrets("hunter2"); err == nil {
		t.Fatal("ParseSecrets accepted a secret without whsec_")
	}
}
