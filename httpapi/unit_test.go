package httpapi

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

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
	p := s.problemFor(&tokenbroker.ProviderError{ProviderID: "gh", StatusCode: 502, Class: tokenbroker.FailureUncertain, RetryAfter: 2500 * time.Millisecond})
	if p.Code != tokenbroker.EPROVIDERUNAVAILABLE || p.Status != 503 || p.RetryAfter != 3 {
		t.Errorf("transient provider error: %+v", p)
	}
	p = s.problemFor(&tokenbroker.ProviderError{ProviderID: "gh", StatusCode: 401, Code: "invalid_client", Class: tokenbroker.FailureClient})
	if p.Code != tokenbroker.EINTERNAL || p.Status != 500 || strings.Contains(p.Detail, "invalid_client") {
		t.Errorf("permanent provider error: %+v", p)
	}
	p = s.problemFor(&tokenbroker.ProviderUnavailableError{ProviderID: "gh"})
	if p.RetryAfter != int(DefaultRetryAfter/time.Second) {
		t.Errorf("default retry after: %+v", p)
	}
	p = s.problemFor(&tokenbroker.ProviderMisconfiguredError{ProviderID: "gh", Reason: "invalid_client", RetryAfter: 30 * time.Second})
	if p.Code != tokenbroker.EPROVIDERMISCONFIGURED || p.Status != 503 || p.RetryAfter != 30 || !strings.Contains(p.Detail, "client credentials") {
		t.Errorf("misconfigured provider: %+v", p)
	}
	p = s.problemFor(&tokenbroker.StoreUnavailableError{Op: "link", Err: errors.New("dial tcp: connection refused")})
	if p.Code != tokenbroker.ESTOREUNAVAILABLE || p.Status != 503 || p.RetryAfter != int(StoreRetryAfter/time.Second) || strings.Contains(p.Detail, "dial") {
		t.Errorf("database unavailable: %+v", p)
	}
}

func TestParsePage(t *testing.T) {
	for _, c := range []struct {
		query    string
		beforeID int64
		limit    int
		err      string
	}{
		{"", 0, 0, ""},
		{"before_id=42&limit=7", 42, 7, ""},
		{"limit=1000", 0, 1000, ""},
		{"before_id=0", 0, 0, "before_id"},
		{"before_id=-3", 0, 0, "before_id"},
		{"before_id=x", 0, 0, "before_id"},
		{"limit=0", 0, 0, "limit"},
		{"limit=1001", 0, 0, "limit"},
		{"limit=ten", 0, 0, "limit"},
	} {
		q, _ := url.ParseQuery(c.query)
		b, l, err := parsePage(q)
		if c.err != "" {
			if tokenbroker.ErrorCode(err) != tokenbroker.EINVALID || !strings.HasPrefix(tokenbroker.ErrorMessage(err), c.err) {
				t.Errorf("parsePage(%q) = %v, want an invalid_request about %s", c.query, err, c.err)
			}
			continue
		}
		if err != nil || b != c.beforeID || l != c.limit {
			t.Errorf("parsePage(%q) = %d, %d, %v; want %d, %d", c.query, b, l, err, c.beforeID, c.limit)
		}
	}
}

func TestPageFull(t *testing.T) {
	for _, c := range []struct {
		n, limit int
		want     bool
	}{
		{0, 0, false}, {99, 0, false}, {100, 0, true}, {0, 5, false}, {4, 5, false}, {5, 5, true},
	} {
		if got := pageFull(c.n, c.limit); got != c.want {
			t.Errorf("pageFull(%d, %d) = %v, want %v", c.n, c.limit, got, c.want)
		}
	}
}
