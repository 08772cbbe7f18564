package crypt_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/crypt"
)

// FuzzOpen feeds the sealed-value decoder what a database (or someone
// with write access to it) may hold: any text, under any associated data.
// It checks that Open never panics, that every failure is one of the three
// documented kinds and matches crypt.ErrOpen, that no error repeats the
// value, that only a value this ring sealed opens (and then to what was
// sealed), and that Seal and Open round-trip the fuzzed plaintext.
func FuzzOpen(f *testing.F) {
	k1 := bytes.Repeat([]byte{0x11}, crypt.KeySize)
	k2 := bytes.Repeat([]byte{0x22}, crypt.KeySize)
	// Seeded nonces: a run is repeatable.
	ring, err := crypt.NewRing(rand.NewChaCha8([32]byte{1}), k1, k2)
	if err != nil {
		f.Fatal(err)
	}
	ad := crypt.AD("links", "refresh_token", "alice", "github")
	// A sealed value under the second key opens too (a ring after rotation).
	old, err := crypt.NewRing(rand.NewChaCha8([32]byte{2}), k2)
	if err != nil {
		f.Fatal(err)
	}
	sealedOld, err := old.Seal("gho_oldkeysecret", ad)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealedOld, "alice", "gho_plaintext", 0, byte(0))

	f.Fuzz(func(t *testing.T, sealed, user, plaintext string, flip int, mask byte) {
		rowAD := crypt.AD("links", "refresh_token", user, "github")

		// Any text: a documented error, or a value this ring sealed.
		pt, err := ring.Open(sealed, rowAD)
		checkOpenError(t, sealed, err)
		if err == nil && sealed == sealedOld && user == "alice" && pt != "gho_oldkeysecret" {
			t.Fatalf("a value sealed under the second key opened to %q", pt)
		}
		if id, err := crypt.SealedKeyID(sealed); err == nil {
			if !crypt.IsSealed(sealed) || len(id) != 16 {
				t.Fatalf("SealedKeyID(%q) = %q but IsSealed is false or the id is not 16 digits", sealed, id)
			}
		} else if !errors.Is(err, crypt.ErrMalformed) || crypt.IsSealed(sealed) {
			t.Fatalf("SealedKeyID error %v for a value IsSealed=%v", err, crypt.IsSealed(sealed))
		}

		// Round trip: what is sealed opens to itself under the same
		// associated data, and under no other.
		s, err := ring.Seal(plaintext, rowAD)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := ring.Open(s, rowAD); err != nil || got != plaintext {
			t.Fatalf("Open(Seal(%q)) = %q, %v", plaintext, got, err)
		}
		if user != "bob" {
			if _, err := ring.Open(s, crypt.AD("links", "refresh_token", "bob", "github")); !errors.Is(err, crypt.ErrAuthentication) {
				t.Fatalf("a value sealed for %q opened for bob: %v", user, err)
			}
		}
		if len(plaintext) >= 4 && strings.Contains(s, plaintext) {
			t.Fatalf("sealed text %q shows the plaintext", s)
		}

		// Tampering: a changed byte either fails with a documented error
		// or (base64 ignores some trailing bits) still opens to the same
		// plaintext; it never opens to anything else.
		if mask != 0 {
			b := []byte(s)
			i := int(uint(flip) % uint(len(b)))
			b[i] ^= mask
			got, err := ring.Open(string(b), rowAD)
			checkOpenError(t, string(b), err)
			if err == nil && got != plaintext {
				t.Fatalf("a tampered value opened to %q, sealed %q", got, plaintext)
			}
		}
	})
}

// checkOpenError checks that err is nil or one of Open's documented errors,
// matching ErrOpen, and does not repeat the value.
func checkOpenError(t *testing.T, sealed string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var uk *crypt.UnknownKeyError
	if !errors.Is(err, crypt.ErrOpen) ||
		!(errors.Is(err, crypt.ErrMalformed) || errors.Is(err, crypt.ErrAuthentication) || errors.As(err, &uk)) {
		t.Fatalf("Open error %T %v is not one of ErrMalformed, ErrAuthentication, *UnknownKeyError", err, err)
	}
	if id, payload, ok := strings.Cut(strings.TrimPrefix(sealed, "tb1:"), ":"); ok && len(payload) >= 8 &&
		!strings.Contains(id, payload) && strings.Contains(err.Error(), payload) {
		t.Fatalf("Open error %q repeats the sealed payload", err)
	}
	if uk != nil && len(sealed) >= 24 && strings.Contains(err.Error(), sealed) {
		t.Fatalf("Open error %q repeats the value", err)
	}
}
