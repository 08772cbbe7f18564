package web

import (
	"bytes"
	"errors"
	"testing"
	"testing/iotest"

	"github.com/tokenbroker/tokenbroker"
)

func TestNewSecrets(t *testing.T) {
	drawn := bytes.Repeat([]byte{7}, 40)
	s, err := newSecrets(nil, bytes.NewReader(drawn))
	if err != nil || !bytes.Equal(s.key, drawn[:32]) {
		t.Fatalf("without a CookieKey: key %x, %v; want 32 bytes drawn from Rand", s.key, err)
	}
	given := bytes.Repeat([]byte{1}, 32)
	s, err = newSecrets(given, iotest.ErrReader(errors.New("not read")))
	if err != nil || !bytes.Equal(s.key, given) {
		t.Fatalf("with a CookieKey: key %x, %v", s.key, err)
	}
	given[0] = 2
	if s.key[0] != 1 {
		t.Error("the key aliases the configuration's CookieKey")
	}
	if _, err := newSecrets(make([]byte, 31), nil); tokenbroker.ErrorCode(err) != tokenbroker.EINVALID {
		t.Errorf("a 31-byte CookieKey: %v, want invalid_request", err)
	}
	if _, err := newSecrets(nil, iotest.ErrReader(errors.New("no entropy"))); err == nil {
		t.Error("a failing Rand gave a key")
	}
}

func TestSecretsMAC(t *testing.T) {
	a, _ := newSecrets(bytes.Repeat([]byte{1}, 32), nil)
	a2, _ := newSecrets(bytes.Repeat([]byte{1}, 32), nil)
	b, _ := newSecrets(bytes.Repeat([]byte{2}, 32), nil)
	if a.mac("l1", "v") != a2.mac("l1", "v") {
		t.Error("mac differs under the same key")
	}
	if a.mac("l1", "v") == a.mac("l2", "v") || a.mac("l1", "v") == b.mac("l1", "v") {
		t.Error("mac ignores the label or the key")
	}
	if got := len(a.mac("l", "v")); got != 43 {
		t.Errorf("mac is %d characters, want 43 (32 bytes, unpadded base64url)", got)
	}
}

func TestParseBaseURL(t *testing.T) {
	for _, c := range []struct {
		in string
		ok bool
	}{
		{"https://broker.example.com", true},
		{"http://127.0.0.1:8080/prefix/", true},
		{"ftp://broker.example.com", false},
		{"https://", false},
		{"/relative", false},
		{"https://u:p@broker.example.com", false},
		{"https://broker.example.com/?q=1", false},
		{"https://broker.example.com/#f", false},
	} {
		_, err := parseBaseURL(c.in)
		if (err == nil) != c.ok || (err != nil && tokenbroker.ErrorCode(err) != tokenbroker.EINVALID) {
			t.Errorf("parseBaseURL(%q) = %v, want ok=%v", c.in, err, c.ok)
		}
	}
}
