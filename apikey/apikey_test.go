package apikey

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker"
)

func TestGenerateAndParse(t *testing.T) {
	plain, prefix, hash, err := Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(plain) != apiKeyLen || !strings.HasPrefix(plain, "tbk_"+prefix+"_") || len(prefix) != PrefixLen || len(hash) != 32 {
		t.Fatalf("key %d chars, prefix %q, hash %d bytes", len(plain), prefix, len(hash))
	}
	p, secret, err := Parse(plain)
	if err != nil || p != prefix || !VerifySecret(secret, hash) {
		t.Fatalf("parse: %q %v", p, err)
	}
	if VerifySecret(secret+"x", hash) || VerifySecret(secret, hash[:31]) {
		t.Fatal("verify accepts a wrong secret or hash")
	}
	// Deterministic from the injected source; two draws differ.
	a, _, _, _ := Generate(bytes.NewReader(bytes.Repeat([]byte{7}, 200)))
	b, _, _, _ := Generate(bytes.NewReader(bytes.Repeat([]byte{7}, 200)))
	if a != b {
		t.Error("same random source, different keys")
	}
	c, _, _, _ := Generate(nil)
	if c == plain {
		t.Error("two keys alike")
	}
	if _, _, _, err := Generate(bytes.NewReader(nil)); err == nil {
		t.Error("no error from an empty random source")
	}
}

func TestParseAPIKeyRejects(t *testing.T) {
	good, _, _, _ := Generate(nil)
	for name, s := range map[string]string{
		"empty":         "",
		"no scheme":     "xxx_" + good[4:],
		"short":         good[:len(good)-1],
		"long":          good + "A",
		"no separator":  good[:16] + "-" + good[17:],
		"upper prefix":  "tbk_ABCDEFGHIJKL" + good[16:],
		"symbol prefix": "tbk_abc/efghijkl" + good[16:],
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := Parse(s)
			if tokenbroker.ErrorCode(err) != tokenbroker.EUNAUTHORIZED {
				t.Fatalf("err %v, want unauthorized", err)
			}
			if s != "" && strings.Contains(err.Error(), s) {
				t.Fatal("error holds the key")
			}
		})
	}
}
