package provider

import (
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenbroker/tokenbroker"
)

// maxDescription bounds a provider's error description as kept in a
// [tokenbroker.ProviderError].
const maxDescription = 200

// maxRetryAfter caps a Retry-After hint.
const maxRetryAfter = 24 * time.Hour

// permanentCodes reject the grant or the client itself: the same request
// can never succeed, so the same refresh token must never be sent again.
var permanentCodes = map[string]bool{
	// RFC 6749 §5.2
	"invalid_grant":          true,
	"unauthorized_client":    true,
	"invalid_client":         true,
	"unsupported_grant_type": true,
	"invalid_scope":          true,
	// GitHub (answered with HTTP 200)
	"bad_refresh_token":            true,
	"incorrect_client_credentials": true,
	"bad_verification_code":        true,
	"incorrect_device_code":        true,
	// RFC 8628 §3.5
	"access_denied": true,
	"expired_token": true,
	// OpenID Connect Core §3.1.2.6
	"interaction_required": true,
	"login_required":       true,
	"consent_required":     true,
	// Slack (answered with HTTP 200)
	"invalid_refresh_token": true,
	"invalid_auth":          true,
	"token_revoked":         true,
	"token_expired":         true,
	"account_inactive":      true,
	"invalid_client_id":     true,
	"bad_client_secret":     true,
	"invalid_grant_type":    true,
	"not_authed":            true,
}

// transientCodes say that the server, not the grant, failed; they win over
// the HTTP status (some servers send server_error with 400).
var transientCodes = map[string]bool{
	"temporarily_unavailable": true, // RFC 6749 §4.1.2.1
	"server_error":            true,
	"authorization_pending":   true, // RFC 8628 §3.5
	"slow_down":               true,
	// Slack
	"ratelimited":         true,
	"internal_error":      true,
	"fatal_error":         true,
	"service_unavailable": true,
	"request_timeout":     true,
}

// Classify turns the error of a call to a provider's endpoint into a
// [*tokenbroker.ProviderError] that says whether the failure is permanent:
//
//   - permanent: an error code of permanentCodes (invalid_grant,
//     bad_refresh_token, unauthorized_client, invalid_client,
//     unsupported_grant_type, incorrect_client_credentials, ...) whatever
//     the status (GitHub and Slack answer errors with HTTP 200); any other
//     400 or 401 answer whatever its code (some servers answer a reused
//     refresh token with invalid_request); a 403 without rate-limit
//     headers; any other error member in a 2xx answer;
//   - transient: no answer at all (network errors, timeouts, a context's
//     deadline), 5xx, 429, a 403 with X-RateLimit-Remaining: 0 or
//     Retry-After, codes that blame the server (temporarily_unavailable,
//     server_error, authorization_pending, slow_down), and any other
//     status.
//
// The provider's code and description are kept for the failure reason
// shown to users, truncated and scrubbed: runs of 32 or more token-like
// characters are replaced with "[redacted]". Retry-After (delta-seconds or
// an HTTP date, RFC 9110 §10.2.3) is parsed. nil gives nil; a
// [*tokenbroker.ProviderError] is returned as a copy.
//
// Classify only classifies. Nothing in this package retries: a permanent
// answer must never be followed by the same refresh token (DESIGN.md I2),
// and the refresh coordinator decides about transient ones.
func Classify(providerID string, err error) *tokenbroker.ProviderError {
	return classify(providerID, err, time.Now(), nil)
}

// classify is [Classify] with the clock and the secrets the request
// carried, which are removed from anything kept.
func classify(providerID string, err error, now time.Time, secrets []string) *tokenbroker.ProviderError {
	if err == nil {
		return nil
	}
	var pe *tokenbroker.ProviderError
	if errors.As(err, &pe) {
		cp := *pe
		if cp.ProviderID == "" {
			cp.ProviderID = providerID
		}
		return &cp
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status, header := 0, http.Header(nil)
		if re.Response != nil {
			status, header = re.Response.StatusCode, re.Response.Header
		}
		// re.Body is never kept: it may hold anything the server echoed.
		return answered(providerID, status, header, re.ErrorCode, re.ErrorDescription, now, secrets)
	}
	var he *httpError
	if errors.As(err, &he) {
		return answered(providerID, he.status, he.header, he.code, he.description, now, secrets)
	}
	// No answer: network error, timeout, canceled context, unreadable
	// response. The cause is kept with a scrubbed message.
	return &tokenbroker.ProviderError{ProviderID: providerID, Err: &scrubbedError{msg: scrub(err.Error(), secrets, 300), err: err}}
}

// answered classifies an HTTP answer.
func answered(providerID string, status int, header http.Header, code, description string, now time.Time, secrets []string) *tokenbroker.ProviderError {
	return &tokenbroker.ProviderError{
		ProviderID:  providerID,
		StatusCode:  status,
		Code:        scrubCode(code, secrets),
		Description: scrub(description, secrets, maxDescription),
		Permanent:   isPermanent(status, code, header),
		RetryAfter:  retryAfter(header, now),
	}
}

// isPermanent is the classification rule of [Classify].
func isPermanent(status int, code string, h http.Header) bool {
	switch {
	case transientCodes[code]:
		return false
	case permanentCodes[code]:
		return true
	case status == http.StatusTooManyRequests || status >= 500:
		return false
	case status == http.StatusForbidden:
		return !rateLimited(h)
	case status == http.StatusBadRequest || status == http.StatusUnauthorized:
		return true
	case status >= 200 && status < 300 && code != "":
		// An error member in a success answer (GitHub, Slack).
		return true
	}
	return false
}

// rateLimited reports whether a 403 answer is a rate limit: GitHub's
// primary limit (X-RateLimit-Remaining: 0) or any answer with Retry-After
// (GitHub's secondary limits).
func rateLimited(h http.Header) bool {
	if h == nil {
		return false
	}
	return strings.TrimSpace(h.Get("X-RateLimit-Remaining")) == "0" || h.Get("Retry-After") != ""
}

// retryAfter parses Retry-After (delta-seconds or HTTP date), else
// X-RateLimit-Reset (Unix seconds) when the limit is exhausted.
func retryAfter(h http.Header, now time.Time) time.Duration {
	if h == nil {
		return 0
	}
	var d time.Duration
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			if n > 0 {
				d = time.Duration(min(n, int64(maxRetryAfter/time.Second))) * time.Second
			}
		} else if t, err := http.ParseTime(v); err == nil {
			d = t.Sub(now)
		}
	} else if strings.TrimSpace(h.Get("X-RateLimit-Remaining")) == "0" {
		if n, err := strconv.ParseInt(strings.TrimSpace(h.Get("X-RateLimit-Reset")), 10, 64); err == nil {
			d = time.Unix(n, 0).Sub(now)
		}
	}
	return min(max(d, 0), maxRetryAfter).Round(time.Second)
}

var (
	// tokenLike matches runs of characters that tokens are made of (base64,
	// base64url, JWT dots, hex, Slack's dashes), long enough to be one.
	tokenLike = regexp.MustCompile(`[A-Za-z0-9+/=_.~-]{32,}`)
	// guid is a run that is kept: Entra's trace and correlation ids.
	guid   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\.?$`)
	codeRe = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)
)

// scrub makes s safe to keep and show: the secrets are removed, control
// characters and runs of white space become one space, token-like runs are
// redacted, and the result is cut to n bytes.
func scrub(s string, secrets []string, n int) string {
	if s == "" {
		return ""
	}
	for _, sec := range secrets {
		if len(sec) >= 4 {
			// A server may echo the form it was sent, where the secret
			// is percent-encoded (and % breaks a token-like run).
			s = strings.ReplaceAll(s, sec, "[redacted]")
			s = strings.ReplaceAll(s, url.QueryEscape(sec), "[redacted]")
		}
	}
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return r < 0x20 || r == 0x7f || r == ' ' || (r >= 0x80 && r <= 0x9f) || r == '\u2028' || r == '\u2029'
	}), " ")
	s = tokenLike.ReplaceAllStringFunc(s, func(m string) string {
		if guid.MatchString(m) {
			return m
		}
		return "[redacted]"
	})
	return tokenbroker.Truncate(s, n)
}

// scrubCode keeps an error code that looks like one.
func scrubCode(code string, secrets []string) string {
	if code == "" || codeRe.MatchString(code) && !tokenLike.MatchString(code) {
		return code
	}
	return scrub(code, secrets, 64)
}

// scrubbedError carries a cause whose message was scrubbed of secrets.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// httpError is a non-token endpoint's error answer (validation,
// revocation, device authorization, discovery).
type httpError struct {
	status            int
	header            http.Header
	code, description string
}

func (e *httpError) Error() string {
	s := "HTTP " + strconv.Itoa(e.status)
	if e.code != "" {
		s += ": " + e.code
	}
	return s
}
