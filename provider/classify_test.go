package provider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenbroker/tokenbroker"
)

func retrieveErr(status int, header http.Header, code, desc string) error {
	return &oauth2.RetrieveError{
		Response:         &http.Response{StatusCode: status, Header: header},
		Body:             []byte(`{"access_token":"` + testAccess + `"}`),
		ErrorCode:        code,
		ErrorDescription: desc,
	}
}

func TestClassify(t *testing.T) {
	h := func(kv ...string) http.Header {
		hh := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			hh.Set(kv[i], kv[i+1])
		}
		return hh
	}
	const (
		rej = tokenbroker.FailureRejected
		cli = tokenbroker.FailureClient
		np  = tokenbroker.FailureNotProcessed
		unc = tokenbroker.FailureUncertain
	)
	cases := []struct {
		name       string
		err        error
		sent       bool
		class      tokenbroker.FailureClass
		status     int
		code       string
		retryAfter time.Duration
	}{
		{"invalid_grant 400", retrieveErr(400, nil, "invalid_grant", ""), true, rej, 400, "invalid_grant", 0},
		{"bad_refresh_token 200", retrieveErr(200, nil, "bad_refresh_token", ""), true, rej, 200, "bad_refresh_token", 0},
		{"invalid_scope 400", retrieveErr(400, nil, "invalid_scope", ""), true, rej, 400, "invalid_scope", 0},
		{"unauthorized_client", retrieveErr(400, nil, "unauthorized_client", ""), true, cli, 400, "unauthorized_client", 0},
		{"invalid_client 401", retrieveErr(401, nil, "invalid_client", ""), true, cli, 401, "invalid_client", 0},
		{"invalid_client 400", retrieveErr(400, nil, "invalid_client", ""), true, cli, 400, "invalid_client", 0},
		{"unsupported_grant_type", retrieveErr(400, nil, "unsupported_grant_type", ""), true, cli, 400, "unsupported_grant_type", 0},
		{"incorrect_client_credentials 200", retrieveErr(200, nil, "incorrect_client_credentials", ""), true, cli, 200, "incorrect_client_credentials", 0},
		{"slack bad_client_secret 200", retrieveErr(200, nil, "bad_client_secret", ""), true, cli, 200, "bad_client_secret", 0},
		{"invalid_request 400 (reused token)", retrieveErr(400, nil, "invalid_request", ""), true, rej, 400, "invalid_request", 0},
		{"invalid_request 500 (reused token)", retrieveErr(500, nil, "invalid_request", ""), true, rej, 500, "invalid_request", 0},
		{"400 without code", retrieveErr(400, nil, "", ""), true, rej, 400, "", 0},
		{"401 without code (client authentication)", retrieveErr(401, nil, "", ""), true, cli, 401, "", 0},
		{"401 invalid_grant (code wins)", retrieveErr(401, nil, "invalid_grant", ""), true, rej, 401, "invalid_grant", 0},
		{"unknown code in 200", retrieveErr(200, nil, "weird_error", ""), true, rej, 200, "weird_error", 0},
		{"slack invalid_refresh_token 200", retrieveErr(200, nil, "invalid_refresh_token", ""), true, rej, 200, "invalid_refresh_token", 0},
		{"invalid_grant with 500 (code wins)", retrieveErr(500, nil, "invalid_grant", ""), true, rej, 500, "invalid_grant", 0},
		{"500", retrieveErr(500, nil, "", ""), true, unc, 500, "", 0},
		{"502", retrieveErr(502, nil, "", ""), true, unc, 502, "", 0},
		{"503 without Retry-After", retrieveErr(503, nil, "", ""), true, unc, 503, "", 0},
		{"503 Retry-After seconds", retrieveErr(503, h("Retry-After", "120"), "", ""), true, np, 503, "", 2 * time.Minute},
		{"429 Retry-After date", retrieveErr(429, h("Retry-After", "Sat, 28 Nov 2026 12:01:00 GMT"), "", ""), true, np, 429, "", time.Minute},
		{"429 Retry-After date in the past", retrieveErr(429, h("Retry-After", "Sat, 28 Nov 2026 11:00:00 GMT"), "", ""), true, np, 429, "", 0},
		{"429 Retry-After huge", retrieveErr(429, h("Retry-After", "99999999999"), "", ""), true, np, 429, "", maxRetryAfter},
		{"429 Retry-After garbage", retrieveErr(429, h("Retry-After", "soon"), "", ""), true, np, 429, "", 0},
		{"403 rate limit remaining 0", retrieveErr(403, h("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "1795867230"), "", ""), true, np, 403, "", 30 * time.Second},
		{"403 Retry-After", retrieveErr(403, h("Retry-After", "5"), "", ""), true, np, 403, "", 5 * time.Second},
		{"403 plain", retrieveErr(403, nil, "", ""), true, rej, 403, "", 0},
		{"403 remaining 10", retrieveErr(403, h("X-RateLimit-Remaining", "10"), "", ""), true, rej, 403, "", 0},
		{"400 server_error (code wins)", retrieveErr(400, nil, "server_error", ""), true, unc, 400, "server_error", 0},
		{"503 server_error with Retry-After", retrieveErr(503, h("Retry-After", "3"), "server_error", ""), true, np, 503, "server_error", 3 * time.Second},
		{"400 temporarily_unavailable", retrieveErr(400, nil, "temporarily_unavailable", ""), true, np, 400, "temporarily_unavailable", 0},
		{"authorization_pending", retrieveErr(400, nil, "authorization_pending", ""), true, np, 400, "authorization_pending", 0},
		{"slow_down", retrieveErr(400, nil, "slow_down", ""), true, np, 400, "slow_down", 0},
		{"access_denied (device)", retrieveErr(400, nil, "access_denied", ""), true, rej, 400, "access_denied", 0},
		{"expired_token (device)", retrieveErr(400, nil, "expired_token", ""), true, rej, 400, "expired_token", 0},
		{"404 from the token endpoint", retrieveErr(404, nil, "", ""), true, cli, 404, "", 0},
		{"302 from the token endpoint", retrieveErr(302, nil, "", ""), true, cli, 302, "", 0},
		{"408", retrieveErr(408, nil, "", ""), true, unc, 408, "", 0},
		{"httpError 401 (a rejected token elsewhere)", &httpError{status: 401}, true, rej, 401, "", 0},
		{"httpError 404", &httpError{status: 404}, true, unc, 404, "", 0},
		{"httpError 429", &httpError{status: 429, header: h("Retry-After", "1")}, true, np, 429, "", time.Second},
		{"deadline after sending", context.DeadlineExceeded, true, unc, 0, "", 0},
		{"deadline before sending", context.DeadlineExceeded, false, np, 0, "", 0},
		{"canceled", context.Canceled, false, np, 0, "", 0},
		{"net op error after sending", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}, true, unc, 0, "", 0},
		{"dial error", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, false, np, 0, "", 0},
		{"wrapped deadline", fmt.Errorf("post: %w", context.DeadlineExceeded), true, unc, 0, "", 0},
		{"missing access_token", errors.New("oauth2: server response missing access_token"), true, unc, 0, "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pe := classify("gh", c.err, testNow, nil, c.sent)
			if pe.ProviderID != "gh" || pe.Class != c.class || pe.StatusCode != c.status || pe.Code != c.code || pe.RetryAfter != c.retryAfter {
				t.Errorf("got class=%v status=%d code=%q retry=%v, want %v %d %q %v",
					pe.Class, pe.StatusCode, pe.Code, pe.RetryAfter, c.class, c.status, c.code, c.retryAfter)
			}
			if pe.Transient() != (c.class == np || c.class == unc) {
				t.Errorf("Transient() = %v for class %v", pe.Transient(), pe.Class)
			}
			if strings.Contains(pe.Error(), testAccess) {
				t.Errorf("the response body leaked into the error: %v", pe)
			}
			if c.status == 0 && !errors.Is(pe, c.err) {
				t.Errorf("the cause is not kept: errors.Is(%v, %v) = false", pe, c.err)
			}
		})
	}
	if Classify("x", nil) != nil {
		t.Error("Classify(nil) != nil")
	}
	if got := ClassifyUnsent("x", context.DeadlineExceeded); got.Class != np {
		t.Errorf("ClassifyUnsent(deadline) = %v, want not processed", got.Class)
	}
	if got := Classify("x", context.DeadlineExceeded); got.Class != unc {
		t.Errorf("Classify(deadline) = %v, want uncertain", got.Class)
	}
	orig := &tokenbroker.ProviderError{Code: "invalid_grant", Class: rej}
	if got := Classify("x", fmt.Errorf("wrapped: %w", orig)); got.ProviderID != "x" || got.Class != rej || got == orig {
		t.Errorf("a ProviderError is returned as a copy with the id filled in: %+v", got)
	}
	if got := Classify("x", &tokenbroker.ProviderError{}); got.Class != unc {
		t.Errorf("a ProviderError without a class is uncertain: %+v", got)
	}
}

func TestScrub(t *testing.T) {
	jwt := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlc2lnbmF0dXJl"
	cases := []struct {
		name, in string
		secrets  []string
		want     string
	}{
		{"plain", "Token has been expired or revoked.", nil, "Token has been expired or revoked."},
		{"secret removed", "refresh token abc123secret is invalid", []string{"abc123secret"}, "refresh token [redacted] is invalid"},
		{"form-encoded secret removed", "refresh_token=a%2Fb%2Bc%3D1234 is invalid", []string{"a/b+c=1234"}, "refresh_token=[redacted] is invalid"},
		{"jwt redacted", "bad token " + jwt, nil, "bad token [redacted]"},
		{"github token redacted", "ghr_1B4a2e77838347a7E420ce178F2E7c6912E1 revoked", nil, "[redacted] revoked"},
		{"guid kept", "Trace ID: 0b9b1b2e-5e1d-4a6f-9a44-6c4b3c0b2a00.", nil, "Trace ID: 0b9b1b2e-5e1d-4a6f-9a44-6c4b3c0b2a00."},
		{"short words kept", "AADSTS700082: The refresh token has expired", nil, "AADSTS700082: The refresh token has expired"},
		{"control characters", "line1\r\nline2\t\x00end", nil, "line1 line2 end"},
		{"short secret not used", "a b c", []string{"b"}, "a b c"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := scrub(c.in, c.secrets, maxDescription); got != c.want {
				t.Errorf("scrub(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
	long := strings.Repeat("word ", 100)
	if got := scrub(long, nil, maxDescription); len(got) > maxDescription+len("…") || !strings.HasSuffix(got, "…") {
		t.Errorf("not truncated: %d bytes", len(got))
	}
	if got := scrubCode("invalid_grant", nil); got != "invalid_grant" {
		t.Errorf("scrubCode kept code = %q", got)
	}
	if got := scrubCode(jwt, nil); strings.Contains(got, "eyJ") {
		t.Errorf("scrubCode(jwt) = %q", got)
	}
}

func TestClassifyDescriptionNeverHoldsToken(t *testing.T) {
	// A server that echoes the refresh token in its description.
	err := retrieveErr(400, nil, "invalid_grant", "refresh token "+oldRefresh+" is unknown")
	pe := classify("p", err, testNow, []string{oldRefresh}, true)
	if strings.Contains(pe.Description, oldRefresh) || strings.Contains(pe.Reason(), oldRefresh) {
		t.Fatalf("description holds the token: %q", pe.Description)
	}
	// Even without knowing the token, a long token-like run is redacted.
	pe = Classify("p", err)
	if strings.Contains(pe.Description, oldRefresh) {
		t.Fatalf("description holds the token: %q", pe.Description)
	}
}
