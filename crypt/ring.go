package crypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// KeySize is the size of a key in bytes: AES-256.
const KeySize = 32

// EnvKeys and EnvKeyFile name the environment variables that carry the key
// ring, for messages and for the command line.
const (
	EnvKeys    = "TOKENBROKER_ENCRYPTION_KEYS"
	EnvKeyFile = "TOKENBROKER_ENCRYPTION_KEY_FILE"
)

// key is one AES-256 key and its AEAD.
type key struct {
	id   string
	aead cipher.AEAD
}

// Ring is an ordered set of keys: the first (primary) seals, all open. A
// value sealed by any key of the ring names that key, so after a rotation
// (a new key put first) old values still open until a rekey re-seals them
// (see [Rekey]).
//
// A Ring is immutable after construction and safe for concurrent use.
type Ring struct {
	keys []*key
	byID map[string]*key
	rand io.Reader
	// derive is HKDF-Extract of the primary key, the root of
	// [Ring.DeriveKey]; the key itself is not kept.
	derive []byte
}

// NewRing returns a ring of the given 32-byte keys, the first primary.
// Nonces are drawn from rnd; nil means crypto/rand.Reader. Tests pass a
// deterministic reader. NewRing keeps no reference to the key slices.
func NewRing(rnd io.Reader, keys ...[]byte) (*Ring, error) {
	if len(keys) == 0 {
		return nil, errors.New("crypt: a key ring needs at least one key")
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	r := &Ring{byID: make(map[string]*key, len(keys)), rand: rnd}
	for i, k := range keys {
		if len(k) != KeySize {
			return nil, fmt.Errorf("crypt: key %d of %d is %d bytes, want %d (AES-256)", i+1, len(keys), len(k), KeySize)
		}
		id := KeyID(k)
		if _, dup := r.byID[id]; dup {
			return nil, fmt.Errorf("crypt: key %d of %d (id %s) appears twice in the ring", i+1, len(keys), id)
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("crypt: key %d of %d: %w", i+1, len(keys), err)
		}
		aead, err := cipher.NewGCM(block) // 96-bit nonce, 128-bit tag
		if err != nil {
			return nil, fmt.Errorf("crypt: key %d of %d: %w", i+1, len(keys), err)
		}
		if i == 0 {
			prk, err := hkdf.Extract(sha256.New, k, []byte("tokenbroker derived keys v1"))
			if err != nil {
				return nil, fmt.Errorf("crypt: derive: %w", err)
			}
			r.derive = prk
		}
		kk := &key{id: id, aead: aead}
		r.keys = append(r.keys, kk)
		r.byID[id] = kk
	}
	return r, nil
}

// KeyID returns the public, stable id of a key: the first 8 bytes, in hex,
// of SHA-256 over a fixed label and the key. It names the key in sealed
// values, in the key_id columns and in `tokenbroker keys status`; it does
// not reveal the key (a preimage of SHA-256 over 256 random bits).
func KeyID(k []byte) string {
	h := sha256.New()
	h.Write([]byte("tokenbroker key id\x00"))
	h.Write(k)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// DeriveKey returns a 32-byte key for purpose, derived from the primary key
// with HKDF-SHA256 (RFC 5869), so replicas sharing a ring share the
// derived keys (for example the connect pages' cookie key) without another
// secret to configure. Different purposes give independent keys; a
// rotation of the primary changes them all.
func (r *Ring) DeriveKey(purpose string) ([]byte, error) {
	return hkdf.Expand(sha256.New, r.derive, purpose, 32)
}

// PrimaryID returns the id of the key that seals.
func (r *Ring) PrimaryID() string { return r.keys[0].id }

// KeyIDs returns the ids of the ring's keys, primary first.
func (r *Ring) KeyIDs() []string {
	ids := make([]string, len(r.keys))
	for i, k := range r.keys {
		ids[i] = k.id
	}
	return ids
}

// Has reports whether the ring holds the key with the given id.
func (r *Ring) Has(id string) bool {
	_, ok := r.byID[id]
	return ok
}

// WithRand returns a ring with the same keys that draws nonces from rnd
// (nil: crypto/rand.Reader).
func (r *Ring) WithRand(rnd io.Reader) *Ring {
	if rnd == nil {
		rnd = rand.Reader
	}
	c := *r
	c.rand = rnd
	return &c
}

// GenerateKey returns a new random key, standard base64 encoded: the form
// TOKENBROKER_ENCRYPTION_KEYS and key files take. rnd nil means
// crypto/rand.Reader.
func GenerateKey(rnd io.Reader) (string, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	k := make([]byte, KeySize)
	if _, err := io.ReadFull(rnd, k); err != nil {
		return "", fmt.Errorf("crypt: generate key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// ParseKeys parses a key ring: standard base64 (RFC 4648 §4) 32-byte keys
// separated by commas or newlines, the first primary. Blank entries and
// lines starting with '#' are ignored, so a key file may carry comments.
// Errors name the position of a bad key, never its text.
func ParseKeys(s string) (*Ring, error) {
	return parseKeys(s, nil)
}

func parseKeys(s string, rnd io.Reader) (*Ring, error) {
	var fields []string
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			continue
		}
		for _, f := range strings.Split(line, ",") {
			if f = strings.TrimSpace(f); f != "" {
				fields = append(fields, f)
			}
		}
	}
	if len(fields) == 0 {
		return nil, errors.New("crypt: no encryption key given")
	}
	keys := make([][]byte, len(fields))
	for i, f := range fields {
		k, err := base64.StdEncoding.DecodeString(f)
		if err != nil {
			// The decoder's message holds only an offset, but say less:
			// nothing of a key belongs in an error.
			return nil, fmt.Errorf("crypt: key %d of %d is not valid standard base64 (generate one with `tokenbroker keys generate`)", i+1, len(fields))
		}
		if len(k) != KeySize {
			return nil, fmt.Errorf("crypt: key %d of %d decodes to %d bytes, want %d (generate one with `tokenbroker keys generate`)", i+1, len(fields), len(k), KeySize)
		}
		keys[i] = k
	}
	r, err := NewRing(rnd, keys...)
	for _, k := range keys {
		clear(k)
	}
	return r, err
}

// LoadKeyFile reads a key ring from a file in the format of [ParseKeys]
// (one key per line is the usual form; the first is primary).
func LoadKeyFile(path string) (*Ring, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("crypt: read key file: %w", err)
	}
	r, err := ParseKeys(string(b))
	clear(b)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return r, nil
}
