package httpapi

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

func TestGenerateAndParseAPIKey(t *testing.T) {
	plain, prefix, hash, err := GenerateAPIKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(plain) != apiKeyLen || !strings.HasPrefix(plain, "tbk_"+prefix+"_") || len(prefix) != APIKeyPrefixLen || len(hash) != 32 {
		t.Fatalf("key %d chars, prefix %q, hash %d bytes", len(plain), prefix, len(hash))
	}
	p, secret, err := ParseAPIKey(plain)
	if err != nil || p != prefix || !VerifyAPIKeySecret(secret, hash) {
		t.Fatalf("parse: %q %v", p, err)
	}
	if VerifyAPIKeySecret(secret+"x", hash) || VerifyAPIKeySecret(secret, hash[:31]) {
		t.Fatal("verify accepts a wrong secret or hash")
	}
	// Deterministic from the injected source; two draws differ.
	a, _, _, _ := GenerateAPIKey(bytes.NewReader(bytes.Repeat([]byte{7}, 200)))
	b, _, _, _ := GenerateAPIKey(bytes.NewReader(bytes.Repeat([]byte{7}, 200)))
	if a != b {
		t.Error("same random source, different keys")
	}
	c, _, _, _ := GenerateAPIKey(nil)
	if c == plain {
		t.Error("two keys alike")
	}
	if _, _, _, err := GenerateAPIKey(bytes.NewReader(nil)); err == nil {
		t.Error("no error from an empty random source")
	}
}

func TestParseAPIKeyRejects(t *testing.T) {
	good, _, _, _ := GenerateAPIKey(nil)
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
			_, _, err := ParseAPIKey(s)
			if tokenbroker.ErrorCode(err) != tokenbroker.EUNAUTHORIZED {
				t.Fatalf("err %v, want unauthorized", err)
			}
			if s != "" && strings.Contains(err.Error(), s) {
				t.Fatal("error holds the key")
			}
		})
	}
}

func TestStatusOf(t *testing.T) {
	for code, want := range map[string]int{
		tokenbroker.EINVALID:             400,
		tokenbroker.EUNAUTHORIZED:        401,
		tokenbroker.EFORBIDDEN:           403,
		tokenbroker.ENOTFOUND:            404,
		tokenbroker.ECONFLICT:            409,
		tokenbroker.EREAUTHREQUIRED:      409,
		tokenbroker.EPROVIDERUNAVAILABLE: 503,
		tokenbroker.ENOTIMPLEMENTED:      501,
		tokenbroker.EINTERNAL:            500,
		"something else":                 500,
	} {
		if got := StatusOf(code); got != want {
			t.Errorf("StatusOf(%q) = %d, want %d", code, got, want)
		}
	}
}

func TestParseMinValid(t *testing.T) {
	for q, want := range map[string]time.Duration{
		"":              0,
		"min_valid=":    0,
		"min_valid=0":   0,
		"min_valid=90":  90 * time.Second,
		"min_valid=90s": 90 * time.Second,
		"min_valid=5m":  5 * time.Minute,
		"min_valid=24h": 24 * time.Hour,
	} {
		r := httptest.NewRequest(http.MethodGet, "/x?"+q, nil)
		got, err := parseMinValid(r)
		if err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", q, got, err, want)
		}
	}
	for _, q := range []string{"min_valid=-1", "min_valid=-1s", "min_valid=25h", "min_valid=86401", "min_valid=x", "min_valid=1.5"} {
		r := httptest.NewRequest(http.MethodGet, "/x?"+q, nil)
		if _, err := parseMinValid(r); tokenbroker.ErrorCode(err) != tokenbroker.EINVALID {
			t.Errorf("%q: err %v, want invalid_request", q, err)
		}
	}
}

func TestProblemForProviderError(t *testing.T) {
	s := New(Config{})
	p := s.problemFor(&tokenbroker.ProviderError{ProviderID: "gh", StatusCode: 502, RetryAfter: 2500 * time.Millisecond})
	if p.Code != tokenbroker.EPROVIDERUNAVAILABLE || p.Status != 503 || p.RetryAfter != 3 {
		t.Errorf("transient provider error: %+v", p)
	}
	p = s.problemFor(&tokenbroker.ProviderError{ProviderID: "gh", StatusCode: 401, Code: "invalid_client", Permanent: true})
	if p.Code != tokenbroker.EINTERNAL || p.Status != 500 || strings.Contains(p.Detail, "invalid_client") {
		t.Errorf("permanent provider error: %+v", p)
	}
	p = s.problemFor(&tokenbroker.ProviderUnavailableError{ProviderID: "gh"})
	if p.RetryAfter != int(DefaultRetryAfter/time.Second) {
		t.Errorf("default retry after: %+v", p)
	}
}
