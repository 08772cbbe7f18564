// Command webhook-receiver is an example receiver of tokenbroker's
// webhooks, using only the Go standard library, to copy into a platform.
// It checks every request the way the Standard Webhooks specification
// asks (docs/webhooks.md): the three headers, a timestamp within five
// minutes, and an HMAC-SHA256 signature made with one of its secrets,
// compared in constant time; it drops repeats by webhook-id, and answers
// 2xx only once the event is handled, so that tokenbroker retries
// otherwise.
//
//	TOKENBROKER_WEBHOOK_SECRET=whsec_... go run ./docs/examples/webhook-receiver -addr 127.0.0.1:9000
//
// The secret variable may list several secrets separated by spaces, the
// new one first, while a rotation is under way.
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Event is the body of a webhook request.
type Event struct {
	Type      string    `json:"type"` // link.created, link.reauth_required, ...
	Timestamp time.Time `json:"timestamp"`
	Data      struct {
		EventID    string `json:"event_id"`
		UserID     string `json:"user_id"`
		ProviderID string `json:"provider_id"`
		Reason     string `json:"reason"`
		Detail     string `json:"detail"`
	} `json:"data"`
}

// Receiver is an http.Handler for tokenbroker's webhooks.
type Receiver struct {
	Keys   [][]byte          // from the whsec_ secrets
	Now    func() time.Time  // the clock of the timestamp check
	Handle func(Event) error // an error makes tokenbroker retry

	mu   sync.Mutex
	seen map[string]time.Time // webhook-id -> when handled
}

// tolerance is how far a request's timestamp may be from our clock.
const tolerance = 5 * time.Minute

// ParseSecrets decodes space-separated "whsec_<base64>" secrets.
func ParseSecrets(s string) ([][]byte, error) {
	var keys [][]byte
	for _, f := range strings.Fields(s) {
		k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(f, "whsec_"))
		if err != nil || !strings.HasPrefix(f, "whsec_") {
			return nil, errors.New(`a secret is "whsec_" and base64`)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no secret")
	}
	return keys, nil
}

// Verify checks the signature headers of a request with body.
func Verify(keys [][]byte, h http.Header, body []byte, now time.Time) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing webhook headers")
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("bad webhook-timestamp")
	}
	if d := now.Sub(time.Unix(unix, 0)); d > tolerance || d < -tolerance {
		return errors.New("webhook-timestamp too far from now") // a replay, or a bad clock
	}
	signed := id + "." + ts + "." + string(body)
	for _, k := range keys {
		mac := hmac.New(sha256.New, k)
		mac.Write([]byte(signed))
		want := mac.Sum(nil)
		for _, sig := range strings.Fields(sigs) { // "v1,<base64> v1,<base64>"
			b64, ok := strings.CutPrefix(sig, "v1,")
			if !ok {
				continue
			}
			got, err := base64.StdEncoding.DecodeString(b64)
			if err == nil && hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return errors.New("no valid signature")
}

func (rv *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	if err := Verify(rv.Keys, r.Header, body, rv.Now()); err != nil {
		http.Error(w, "invalid signature", http.StatusUnauthorized) // no detail to the sender
		return
	}
	id := r.Header.Get("webhook-id")
	rv.mu.Lock()
	_, dup := rv.seen[id]
	rv.mu.Unlock()
	if dup {
		w.WriteHeader(http.StatusNoContent) // delivered at least once: a repeat
		return
	}
	var ev Event
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	if err := rv.Handle(ev); err != nil {
		http.Error(w, "try again", http.StatusServiceUnavailable) // tokenbroker retries
		return
	}
	// A real receiver records handled ids in its database, in the
	// transaction that handles the event, and keeps them for longer
	// than tokenbroker's retry window (24 h).
	rv.mu.Lock()
	if rv.seen == nil {
		rv.seen = map[string]time.Time{}
	}
	rv.seen[id] = rv.Now()
	for k, t := range rv.seen {
		if rv.Now().Sub(t) > 48*time.Hour {
			delete(rv.seen, k)
		}
	}
	rv.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	flag.Parse()
	keys, err := ParseSecrets(os.Getenv("TOKENBROKER_WEBHOOK_SECRET"))
	if err != nil {
		log.Fatalf("TOKENBROKER_WEBHOOK_SECRET: %v", err)
	}
	rv := &Receiver{Keys: keys, Now: time.Now, Handle: func(ev Event) error {
		switch ev.Type {
		case "link.reauth_required":
			fmt.Printf("%s must reconnect %s (%s)\n", ev.Data.UserID, ev.Data.ProviderID, ev.Data.Reason)
		case "link.recovered":
			fmt.Printf("%s's %s link works again\n", ev.Data.UserID, ev.Data.ProviderID)
		default:
			fmt.Printf("%s %s %s\n", ev.Type, ev.Data.UserID, ev.Data.ProviderID)
		}
		return nil
	}}
	log.Printf("receiving tokenbroker webhooks on http://%s", *addr)
	log.Fatal(http.ListenAndServe(*addr, rv))
}
