package crypt_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/crypt"
)

// MustKey returns a deterministic 32-byte key filled with b.
func MustKey(tb testing.TB, b byte) []byte {
	tb.Helper()
	return bytes.Repeat([]byte{b}, crypt.KeySize)
}

// MustRing returns a ring of the given keys, the first primary.
func MustRing(tb testing.TB, keys ...[]byte) *crypt.Ring {
	tb.Helper()
	r, err := crypt.NewRing(nil, keys...)
	if err != nil {
		tb.Fatalf("NewRing: %v", err)
	}
	return r
}

// MustSeal seals pt with r under ad.
func MustSeal(tb testing.TB, r *crypt.Ring, pt string, ad []byte) string {
	tb.Helper()
	s, err := r.Seal(pt, ad)
	if err != nil {
		tb.Fatalf("Seal: %v", err)
	}
	return s
}

func b64(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

func TestSealOpenRoundTrip(t *testing.T) {
	r := MustRing(t, MustKey(t, 1))
	ad := crypt.AD("links", "access_token", "alice", "github")
	for _, pt := range []string{
		"",
		"gho_16C7e42F292c6912E7710c838347Ae178B4a",
		"ünïcødé ✓",
		strings.Repeat("x", 1<<16),
		"\x00\xff binary",
	} {
		sealed := MustSeal(t, r, pt, ad)
		if !strings.HasPrefix(sealed, "tb1:"+r.PrimaryID()+":") {
			t.Errorf("sealed text %.30q does not start with tb1:<primary id>:", sealed)
		}
		if pt != "" && strings.Contains(sealed, pt) {
			t.Errorf("sealed text contains the plaintext")
		}
		got, err := r.Open(sealed, ad)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if got != pt {
			t.Errorf("Open = %.20q, want %.20q", got, pt)
		}
		id, err := crypt.SealedKeyID(sealed)
		if err != nil || id != r.PrimaryID() {
			t.Errorf("SealedKeyID = %q, %v; want %q", id, err, r.PrimaryID())
		}
	}
}

func TestSealFreshNonce(t *testing.T) {
	r := MustRing(t, MustKey(t, 1))
	ad := crypt.AD("links", "access_token", "alice", "github")
	a, b := MustSeal(t, r, "same", ad), MustSeal(t, r, "same", ad)
	if a == b {
		t.Fatal("two seals of the same value are equal: nonce reused")
	}
}

func TestSealNonceFromInjectedReader(t *testing.T) {
	nonce := []byte("0123456789ab")
	r := MustRing(t, MustKey(t, 1)).WithRand(bytes.NewReader(nonce))
	sealed := MustSeal(t, r, "v", nil)
	raw, err := base64.RawURLEncoding.DecodeString(sealed[strings.LastIndexByte(sealed, ':')+1:])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw[:12], nonce) {
		t.Errorf("nonce = %x, want %x from the injected reader", raw[:12], nonce)
	}
	// The reader is exhausted: sealing fails rather than reusing a nonce.
	if _, err := r.Seal("v", nil); !errors.Is(err, io.EOF) {
		t.Errorf("Seal with exhausted reader = %v, want io.EOF", err)
	}
}

func TestOpenFailures(t *testing.T) {
	k1, k2 := MustKey(t, 1), MustKey(t, 2)
	r1 := MustRing(t, k1)
	ad := crypt.AD("links", "access_token", "alice", "github")
	sealed := MustSeal(t, r1, "secret-token", ad)
	_, payload, _ := strings.Cut(strings.TrimPrefix(sealed, "tb1:"), ":")

	// A value sealed by k1 but labelled with k2's id: the wrong key.
	wrongKey := "tb1:" + crypt.KeyID(k2) + ":" + payload

	tests := []struct {
		name   string
		ring   *crypt.Ring
		sealed string
		ad     []byte
		want   error
	}{
		{"wrong key", MustRing(t, k2), wrongKey, ad, crypt.ErrAuthentication},
		{"swapped row (other user)", r1, sealed, crypt.AD("links", "access_token", "bob", "github"), crypt.ErrAuthentication},
		{"swapped row (other provider)", r1, sealed, crypt.AD("links", "access_token", "alice", "gitlab"), crypt.ErrAuthentication},
		{"swapped column", r1, sealed, crypt.AD("links", "refresh_token", "alice", "github"), crypt.ErrAuthentication},
		{"swapped table", r1, sealed, crypt.AD("auth_requests", "access_token", "alice", "github"), crypt.ErrAuthentication},
		{"no associated data", r1, sealed, nil, crypt.ErrAuthentication},
		{"plaintext", r1, "secret-token", ad, crypt.ErrMalformed},
		{"empty", r1, "", ad, crypt.ErrMalformed},
		{"other version", r1, "tb2:" + strings.TrimPrefix(sealed, "tb1:"), ad, crypt.ErrMalformed},
		{"bad key id", r1, "tb1:XYZ:" + payload, ad, crypt.ErrMalformed},
		{"bad base64", r1, "tb1:" + r1.PrimaryID() + ":!!!", ad, crypt.ErrMalformed},
		{"truncated", r1, "tb1:" + r1.PrimaryID() + ":" + payload[:20], ad, crypt.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.ring.Open(tt.sealed, tt.ad)
			if !errors.Is(err, tt.want) || !errors.Is(err, crypt.ErrOpen) {
				t.Fatalf("Open = %q, %v; want %v (matching ErrOpen)", got, err, tt.want)
			}
			if strings.Contains(err.Error(), "secret-token") || strings.Contains(err.Error(), payload) {
				t.Errorf("error %q reveals the value", err)
			}
		})
	}
}

func TestOpenTamperedByte(t *testing.T) {
	r := MustRing(t, MustKey(t, 1))
	ad := crypt.AD("links", "refresh_token", "alice", "github")
	sealed := MustSeal(t, r, "ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246c34E1ccbF66C46812d16D5B1A9Dc86A1498", ad)
	prefix := sealed[:strings.LastIndexByte(sealed, ':')+1]
	raw, err := base64.RawURLEncoding.DecodeString(sealed[len(prefix):])
	if err != nil {
		t.Fatal(err)
	}
	// Every byte of nonce, ciphertext and tag is authenticated.
	for i := range raw {
		for _, bit := range []byte{0x01, 0x80} {
			c := bytes.Clone(raw)
			c[i] ^= bit
			_, err := r.Open(prefix+base64.RawURLEncoding.EncodeToString(c), ad)
			if !errors.Is(err, crypt.ErrAuthentication) {
				t.Fatalf("byte %d bit %#x flipped: Open err = %v, want ErrAuthentication", i, bit, err)
			}
		}
	}
}

func TestOpenUnknownKey(t *testing.T) {
	old, cur := MustRing(t, MustKey(t, 1)), MustRing(t, MustKey(t, 2))
	sealed := MustSeal(t, old, "v", nil)
	_, err := cur.Open(sealed, nil)
	var uk *crypt.UnknownKeyError
	if !errors.As(err, &uk) || uk.KeyID != old.PrimaryID() || !errors.Is(err, crypt.ErrOpen) {
		t.Fatalf("Open = %v, want *UnknownKeyError{%s} matching ErrOpen", err, old.PrimaryID())
	}
	if !strings.Contains(err.Error(), old.PrimaryID()) {
		t.Errorf("error %q does not name the key id", err)
	}
}

func TestRingOrdering(t *testing.T) {
	k1, k2, k3 := MustKey(t, 1), MustKey(t, 2), MustKey(t, 3)
	before := MustRing(t, k1)
	sealedBefore := MustSeal(t, before, "old", nil)

	// Rotation step 1: the new key last: it opens but does not seal.
	added, err := crypt.ParseKeys(b64(k1) + "," + b64(k2))
	if err != nil {
		t.Fatal(err)
	}
	if added.PrimaryID() != crypt.KeyID(k1) {
		t.Errorf("primary = %s, want the first key %s", added.PrimaryID(), crypt.KeyID(k1))
	}
	// Step 2: the new key first: it seals, the old one still opens.
	rotated, err := crypt.ParseKeys(b64(k2) + ", " + b64(k1))
	if err != nil {
		t.Fatal(err)
	}
	if got := rotated.KeyIDs(); len(got) != 2 || got[0] != crypt.KeyID(k2) || got[1] != crypt.KeyID(k1) {
		t.Errorf("KeyIDs = %v, want [%s %s]", got, crypt.KeyID(k2), crypt.KeyID(k1))
	}
	sealedAfter := MustSeal(t, rotated, "new", nil)
	if id, _ := crypt.SealedKeyID(sealedAfter); id != crypt.KeyID(k2) {
		t.Errorf("rotated ring sealed with %s, want %s", id, crypt.KeyID(k2))
	}
	for _, r := range []*crypt.Ring{added, rotated} {
		for sealed, want := range map[string]string{sealedBefore: "old", sealedAfter: "new"} {
			if got, err := r.Open(sealed, nil); err != nil || got != want {
				t.Errorf("ring %v: Open = %q, %v; want %q", r.KeyIDs(), got, err, want)
			}
		}
	}
	if !rotated.Has(crypt.KeyID(k1)) || rotated.Has(crypt.KeyID(k3)) {
		t.Error("Has is wrong")
	}
	// Step 4: old key dropped: its values no longer open.
	dropped := MustRing(t, k2)
	if _, err := dropped.Open(sealedBefore, nil); !errors.Is(err, crypt.ErrOpen) {
		t.Errorf("ring without the old key opened its value: %v", err)
	}
}

func TestKeyIDStable(t *testing.T) {
	// Pinned: key ids are stored in every row; changing the derivation
	// would orphan every database.
	if got, want := crypt.KeyID(make([]byte, 32)), "412492d6d6d35015"; got != want {
		t.Errorf("KeyID(zero key) = %s, want %s", got, want)
	}
	k := MustKey(t, 7)
	if crypt.KeyID(k) != crypt.KeyID(bytes.Clone(k)) || len(crypt.KeyID(k)) != 16 {
		t.Error("KeyID not stable or not 16 hex digits")
	}
	if strings.Contains(crypt.KeyID(k), b64(k)) {
		t.Error("KeyID reveals the key")
	}
}

func TestADUnambiguous(t *testing.T) {
	cases := [][]byte{
		crypt.AD("links", "access_token", "a\x00b"),
		crypt.AD("links", "access_token", "a", "b"),
		crypt.AD("links", "access_token", "ab"),
		crypt.AD("links", "access_token", "a", "b", ""),
		crypt.AD("links", "access_tokena", "b"),
		crypt.AD("link", "saccess_token", "a", "b"),
		crypt.AD("links", "access_token"),
		crypt.AD("links", "access_token", ""),
	}
	seen := map[string]int{}
	for i, c := range cases {
		if j, dup := seen[string(c)]; dup {
			t.Errorf("AD case %d equals case %d", i, j)
		}
		seen[string(c)] = i
	}
}

func TestParseKeys(t *testing.T) {
	k1, k2 := b64(MustKey(t, 1)), b64(MustKey(t, 2))
	good := []struct {
		in   string
		want []string
	}{
		{k1, []string{crypt.KeyID(MustKey(t, 1))}},
		{k1 + "," + k2, []string{crypt.KeyID(MustKey(t, 1)), crypt.KeyID(MustKey(t, 2))}},
		{" " + k2 + " ,\n" + k1 + ",\n", []string{crypt.KeyID(MustKey(t, 2)), crypt.KeyID(MustKey(t, 1))}},
		{"# comment\n" + k1 + "\n\n# old\n" + k2 + "\n", []string{crypt.KeyID(MustKey(t, 1)), crypt.KeyID(MustKey(t, 2))}},
	}
	for _, tt := range good {
		r, err := crypt.ParseKeys(tt.in)
		if err != nil {
			t.Errorf("ParseKeys: %v", err)
			continue
		}
		if got := strings.Join(r.KeyIDs(), ","); got != strings.Join(tt.want, ",") {
			t.Errorf("KeyIDs = %s, want %v", got, tt.want)
		}
	}

	short := base64.StdEncoding.EncodeToString([]byte("sixteen byte key"))
	urlAlphabet := base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32))
	bad := []struct {
		name, in, wantMsg string
	}{
		{"empty", "", "no encryption key"},
		{"only commas", " , ,", "no encryption key"},
		{"short key", short, "key 1 of 1 decodes to 16 bytes"},
		{"long key", b64(bytes.Repeat([]byte{9}, 48)), "key 1 of 1 decodes to 48 bytes"},
		{"bad base64", k1 + ",not*base64*" + k2[:10], "key 2 of 2 is not valid standard base64"},
		{"url alphabet", urlAlphabet, "key 1 of 1 is not valid standard base64"},
		{"hex", strings.Repeat("ab", 32), "key 1 of 1 decodes to 48 bytes"},
		{"duplicate", k1 + "," + k2 + "," + k1, "appears twice"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := crypt.ParseKeys(tt.in)
			if err == nil {
				t.Fatal("ParseKeys succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
			// No piece of any key text appears in the message.
			for _, f := range strings.FieldsFunc(tt.in, func(r rune) bool { return r == ',' || r == '\n' || r == ' ' }) {
				for i := 0; i+8 <= len(f); i++ {
					if strings.Contains(err.Error(), f[i:i+8]) {
						t.Fatalf("error %q contains key material %q", err, f[i:i+8])
					}
				}
			}
		})
	}
}

func TestGenerateKey(t *testing.T) {
	k, err := crypt.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(k)
	if err != nil || len(raw) != 32 {
		t.Fatalf("GenerateKey = %d bytes, %v; want 32 bytes of std base64", len(raw), err)
	}
	if k2, _ := crypt.GenerateKey(nil); k2 == k {
		t.Error("two generated keys are equal")
	}
	det, err := crypt.GenerateKey(bytes.NewReader(MustKey(t, 5)))
	if err != nil || det != b64(MustKey(t, 5)) {
		t.Errorf("GenerateKey(reader) = %q, %v; want the reader's bytes", det, err)
	}
	if _, err := crypt.GenerateKey(bytes.NewReader([]byte("short"))); err == nil {
		t.Error("GenerateKey with a short reader succeeded")
	}
	if _, err := crypt.ParseKeys(k); err != nil {
		t.Errorf("generated key does not parse: %v", err)
	}
}

func TestLoadKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys")
	k1, k2 := MustKey(t, 1), MustKey(t, 2)
	if err := os.WriteFile(path, []byte("# new\n"+b64(k2)+"\n# old\n"+b64(k1)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := crypt.LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if r.PrimaryID() != crypt.KeyID(k2) || !r.Has(crypt.KeyID(k1)) {
		t.Errorf("KeyIDs = %v", r.KeyIDs())
	}
	if _, err := crypt.LoadKeyFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("c2hvcnQ=\n"), 0o600)
	if _, err := crypt.LoadKeyFile(bad); err == nil || !strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), "c2hvcnQ") {
		t.Errorf("bad file: %v, want an error naming the file and not the key", err)
	}
}

var benchToken = "gho_16C7e42F292c6912E7710c838347Ae178B4a" // 40 bytes, a GitHub-sized token

func BenchmarkSeal(b *testing.B) {
	r := MustRing(b, MustKey(b, 1))
	ad := crypt.AD("links", "access_token", "user-123456", "github")
	b.ReportAllocs()
	b.SetBytes(int64(len(benchToken)))
	for b.Loop() {
		if _, err := r.Seal(benchToken, ad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	r := MustRing(b, MustKey(b, 1))
	ad := crypt.AD("links", "access_token", "user-123456", "github")
	sealed := MustSeal(b, r, benchToken, ad)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchToken)))
	for b.Loop() {
		if _, err := r.Open(sealed, ad); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDeriveKey(t *testing.T) {
	k1, _ := crypt.GenerateKey(nil)
	k2, _ := crypt.GenerateKey(nil)
	a, err := crypt.ParseKeys(k1 + "," + k2)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := crypt.ParseKeys(k1)
	c, _ := crypt.ParseKeys(k2 + "," + k1)
	ka, _ := a.DeriveKey("web cookie")
	kb, _ := b.DeriveKey("web cookie")
	kc, _ := c.DeriveKey("web cookie")
	kx, _ := a.DeriveKey("other")
	if len(ka) != 32 || string(ka) != string(kb) {
		t.Fatal("rings with the same primary must derive the same key")
	}
	if string(ka) == string(kc) || string(ka) == string(kx) {
		t.Fatal("another primary or purpose must derive another key")
	}
}
