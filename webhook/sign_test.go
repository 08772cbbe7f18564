package webhook_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/tokenbroker/tokenbroker/webhook"
)

// The test vector of the Standard Webhooks reference libraries.
const (
	vecSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vecID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vecUnix   = 1614265330
	vecBody   = `{"test": 2432232314}`
	vecSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func mustKeys(t *testing.T, secrets ...string) [][]byte {
	t.Helper()
	keys, err := webhook.ParseSecrets(strings.Join(secrets, " "))
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestSignMatchesTheSpecificationVector(t *testing.T) {
	got := webhook.Sign(mustKeys(t, vecSecret), vecID, time.Unix(vecUnix, 0), []byte(vecBody))
	if got != vecSig {
		t.Fatalf("Sign = %q, want %q", got, vecSig)
	}
}

func headers(id string, ts time.Time, sig string) http.Header {
	h := http.Header{}
	h.Set(webhook.HeaderID, id)
	h.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(webhook.HeaderSignature, sig)
	return h
}

func TestReferenceLibraryVerifiesEachSecretOfARotation(t *testing.T) {
	newSecret, oldSecret := webhook.NewSecret(), webhook.NewSecret()
	now := time.Now()
	body := []byte(`{"type":"link.created"}`)
	sig := webhook.Sign(mustKeys(t, newSecret, oldSecret), "msg_1", now, body)
	if n := len(strings.Fields(sig)); n != 2 {
		t.Fatalf("signature header %q has %d signatures, want 2", sig, n)
	}
	// A receiver that still has the old secret and one that has the new
	// one both accept; one with another secret does not.
	for _, secret := range []string{newSecret, oldSecret} {
		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(body, headers("msg_1", now, sig)); err != nil {
			t.Errorf("reference Verify with one of the secrets: %v", err)
		}
	}
	wh, _ := standardwebhooks.NewWebhook(webhook.NewSecret())
	if err := wh.Verify(body, headers("msg_1", now, sig)); err == nil {
		t.Error("reference Verify accepted a message signed with other secrets")
	}
}

func TestVerify(t *testing.T) {
	keys := mustKeys(t, vecSecret)
	now := time.Unix(vecUnix, 0)
	good := headers(vecID, now, "v0,bogus "+vecSig)
	if err := webhook.Verify(keys, good, []byte(vecBody), now.Add(time.Minute), webhook.DefaultTolerance); err != nil {
		t.Fatalf("Verify(good) = %v", err)
	}
	cases := []struct {
		name string
		h    http.Header
		body string
		now  time.Time
		want error
	}{
		{"tampered body", good, `{"test": 1}`, now, webhook.ErrNoSignature},
		{"other id", headers("msg_other", now, vecSig), vecBody, now, webhook.ErrNoSignature},
		{"other timestamp", headers(vecID, now.Add(time.Second), vecSig), vecBody, now, webhook.ErrNoSignature},
		{"too old", good, vecBody, now.Add(6 * time.Minute), webhook.ErrTimestamp},
		{"from the future", good, vecBody, now.Add(-6 * time.Minute), webhook.ErrTimestamp},
		{"no signature", headers(vecID, now, ""), vecBody, now, webhook.ErrMissingHeaders},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := webhook.Verify(keys, c.h, []byte(c.body), c.now, webhook.DefaultTolerance); !errors.Is(err, c.want) {
				t.Fatalf("Verify = %v, want %v", err, c.want)
			}
		})
	}
}

func TestParseSecret(t *testing.T) {
	s := webhook.NewSecret()
	if k, err := webhook.ParseSecret(s); err != nil || len(k) != 32 {
		t.Fatalf("ParseSecret(NewSecret()) = %d bytes, %v", len(k), err)
	}
	for _, bad := range []string{"", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_!!!!", "whsec_c2hvcnQ="} {
		if _, err := webhook.ParseSecret(bad); !errors.Is(err, webhook.ErrBadSecret) {
			t.Errorf("ParseSecret(%q) = %v, want ErrBadSecret", bad, err)
		}
	}
}
