package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The Standard Webhooks headers (https://www.standardwebhooks.com/,
// "Signature scheme").
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every signing secret: "whsec_" and the base64 of the
// key.
const SecretPrefix = "whsec_"

// Key lengths a secret may have, in bytes (the specification asks for
// 24 to 64).
const (
	minKeyLen = 24
	maxKeyLen = 64
)

// ErrBadSecret is returned by [ParseSecret] for a malformed secret. Its
// message never contains the secret.
var ErrBadSecret = errors.New(`want "whsec_" followed by the base64 of 24 to 64 random bytes`)

// ParseSecret returns the HMAC key of a "whsec_<base64>" secret.
func ParseSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, ErrBadSecret
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) < minKeyLen || len(key) > maxKeyLen {
		return nil, ErrBadSecret
	}
	return key, nil
}

// ParseSecrets parses a whitespace-separated list of secrets: the form a
// configuration takes during a rotation (the new secret and the old one).
func ParseSecrets(s string) ([][]byte, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return nil, errors.New("no secret")
	}
	keys := make([][]byte, 0, len(fields))
	for i, f := range fields {
		k, err := ParseSecret(f)
		if err != nil {
			return nil, fmt.Errorf("secret #%d: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// NewSecret returns a fresh secret of 32 random bytes.
func NewSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return SecretPrefix + base64.StdEncoding.EncodeToString(b[:])
}

// Sign returns the webhook-signature header of a message: for each key,
// "v1," and the base64 of HMAC-SHA256(key, id + "." + unix seconds + "." +
// body), separated by spaces. Several keys sign during a secret rotation,
// so receivers holding either secret accept the message.
func Sign(keys [][]byte, id string, ts time.Time, body []byte) string {
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(mac(k, id, ts.Unix(), body)))
	}
	return b.String()
}

func mac(key []byte, id string, unix int64, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write(strconv.AppendInt(nil, unix, 10))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verification errors of [Verify].
var (
	ErrMissingHeaders = errors.New("webhook: missing webhook-id, webhook-timestamp or webhook-signature")
	ErrTimestamp      = errors.New("webhook: timestamp outside the tolerance")
	ErrNoSignature    = errors.New("webhook: no matching signature")
)

// DefaultTolerance is how far a message's timestamp may be from the
// receiver's clock (replay protection).
const DefaultTolerance = 5 * time.Minute

// Verify checks a received message the way a receiver must: the three
// headers are present, the timestamp is within tolerance of now, and one
// of the v1 signatures matches one of keys (compared in constant time).
func Verify(keys [][]byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id, tsText, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return ErrMissingHeaders
	}
	unix, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return ErrMissingHeaders
	}
	if d := now.Sub(time.Unix(unix, 0)); d > tolerance || d < -tolerance {
		return ErrTimestamp
	}
	for _, k := range keys {
		want := mac(k, id, unix, body)
		for _, sig := range strings.Fields(sigs) {
			version, b64, ok := strings.Cut(sig, ",")
			if !ok || version != "v1" {
				continue
			}
			got, err := base64.StdEncoding.DecodeString(b64)
			if err == nil && hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return ErrNoSignature
}
