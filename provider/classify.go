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

// clientCodes refuse this service's client, not the user's grant: a wrong
// or rotated client secret, a client not allowed the grant. The grant was
// not processed; an operator must fix the provider's configuration.
var clientCodes = map[string]bool{
	// RFC 6749 §5.2
	"invalid_client":         true,
	"unauthorized_client":    true,
	"unsupported_grant_type": true,
	// GitHub (answered with HTTP 200)
	"incorrect_client_credentials": true,
	// Slack (answered with HTTP 200)
	"invalid_client_id":  true,
	"bad_client_secret":  true,
	"invalid_grant_type": true,
}

// rejectCodes reject the grant itself: the same refresh token can never
// succeed, whatever the status they come with (some servers answer a spent
// refresh token with HTTP 500 invalid_request).
var rejectCodes = map[string]bool{
	// RFC 6749 §5.2
	"invalid_grant":   true,
	"invalid_request": true,
	"invalid_scope":   true,
	// GitHub (answered with HTTP 200)
	"bad_refresh_token":     true,
	"bad_verification_code": true,
	"incorrect_device_code": true,
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
	"not_authed":            true,
}

// serverCodes blame the server, not the grant; they win over the HTTP
// status (some servers send server_error with 400). notActedCodes among
// them say the server did not act on the request at all.
var (
	serverCodes = map[string]bool{
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
	notActedCodes = map[string]bool{
		"temporarily_unavailable": true,
		"authorization_pending":   true,
		"slow_down":               true,
		"ratelimited":             true,
	}
)

// Classify turns the error of a call to a provider's endpoint into a
// [*tokenbroker.ProviderError] with its [tokenbroker.FailureClass]
// (docs/design.md, "Outcomes"):
//
//   - client: a code that refuses the client (invalid_client,
//     unauthorized_client, unsupported_grant_type, GitHub's
//     incorrect_client_credentials, ...), or from the token endpoint a
//     401 without a code that rejects the grant or an answer that says
//     the endpoint is wrong (404, 405, a redirect): an operator's error,
//     never a link's;
//   - rejected: a code that rejects the grant (invalid_grant,
//     invalid_request, bad_refresh_token, ...) whatever the status
//     (GitHub and Slack answer errors with HTTP 200, some servers a spent
//     token with 500), any other 400 (and 401 from other endpoints), a
//     403 without rate-limit headers, any other error member in a 2xx
//     answer;
//   - not processed: the provider said it did not act: 429, a 503 with
//     Retry-After, a 403 rate limit, codes such as
//     temporarily_unavailable and slow_down;
//   - uncertain: any other 5xx or server_error-like code, any other
//     status, and every failure without an answer (a timeout, a reset, an
//     unreadable body) - the request may have been processed. A caller
//     that knows the request was never written uses [ClassifyUnsent].
//
// The provider's code and description are kept for the failure reason
// shown to users, truncated and scrubbed: runs of 32 or more token-like
// characters are replaced with "[redacted]". Retry-After (delta-seconds or
// an HTTP date, RFC 9110 §10.2.3) is parsed. nil gives nil; a
// [*tokenbroker.ProviderError] is returned as a copy.
//
// Classify only classifies. Nothing in this package retries: a rejected
// refresh token must never be sent again (docs/design.md, I2), and the refresh
// coordinator decides about the others.
func Classify(providerID string, err error) *tokenbroker.ProviderError {
	return classify(providerID, err, time.Now(), nil, true)
}

// ClassifyUnsent is [Classify] for a call whose request was certainly not
// written: a failure without an answer is then not processed.
func ClassifyUnsent(providerID string, err error) *tokenbroker.ProviderError {
	return classify(providerID, err, time.Now(), nil, false)
}

// classify is [Classify] with the clock, the secrets the request carried
// (removed from anything kept), and whether the request may have been
// written.
func classify(providerID string, err error, now time.Time, secrets []string, sent bool) *tokenbroker.ProviderError {
	if err == nil {
		return nil
	}
	var pe *tokenbroker.ProviderError
	if errors.As(err, &pe) {
		cp := *pe
		if cp.ProviderID == "" {
			cp.ProviderID = providerID
		}
		if cp.Class == "" {
			cp.Class = tokenbroker.FailureUncertain
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
		return answered(providerID, status, header, re.ErrorCode, re.ErrorDescription, now, secrets, true)
	}
	var he *httpError
	if errors.As(err, &he) {
		return answered(providerID, he.status, he.header, he.code, he.description, now, secrets, false)
	}
	// No answer: network error, timeout, canceled context, unreadable
	// response. The cause is kept with a scrubbed message.
	class := tokenbroker.FailureUncertain
	if !sent {
		class = tokenbroker.FailureNotProcessed
	}
	return &tokenbroker.ProviderError{ProviderID: providerID, Class: class, Err: &scrubbedError{msg: scrub(err.Error(), secrets, 300), err: err}}
}

// answered classifies an HTTP answer of the token endpoint (an
// *oauth2.RetrieveError) or of another endpoint (validation, revocation,
// device authorization: an *httpError).
func answered(providerID string, status int, header http.Header, code, description string, now time.Time, secrets []string, tokenEndpoint bool) *tokenbroker.ProviderError {
	return &tokenbroker.ProviderError{
		ProviderID:  providerID,
		StatusCode:  status,
		Code:        scrubCode(code, secrets),
		Description: scrub(description, secrets, maxDescription),
		Class:       classOf(status, code, header, tokenEndpoint),
		RetryAfter:  retryAfter(header, now),
	}
}

// classOf is the classification rule of [Classify] for an answer.
func classOf(status int, code string, h http.Header, tokenEndpoint bool) tokenbroker.FailureClass {
	notActed := status == http.StatusTooManyRequests ||
		status == http.StatusServiceUnavailable && h != nil && h.Get("Retry-After") != ""
	switch {
	case serverCodes[code]:
		if notActed || notActedCodes[code] {
			return tokenbroker.FailureNotProcessed
		}
		return tokenbroker.FailureUncertain
	case clientCodes[code]:
		return tokenbroker.FailureClient
	case rejectCodes[code]:
		return tokenbroker.FailureRejected
	case notActed:
		return tokenbroker.FailureNotProcessed
	case status >= 500:
		return tokenbroker.FailureUncertain
	case status == http.StatusForbidden:
		if rateLimited(h) {
			return tokenbroker.FailureNotProcessed
		}
		return tokenbroker.FailureRejected
	case status == http.StatusUnauthorized && tokenEndpoint:
		// RFC 6749 §5.2: a failed client authentication may be answered
		// with 401.
		return tokenbroker.FailureClient
	case tokenEndpoint && (status == http.StatusNotFound || status == http.StatusMethodNotAllowed || status >= 300 && status < 400):
		// The token endpoint is not where the configuration says.
		return tokenbroker.FailureClient
	case status == http.StatusBadRequest || status == http.StatusUnauthorized:
		// At another endpoint a 401 rejects the token presented.
		return tokenbroker.FailureRejected
	case status >= 200 && status < 300 && code != "":
		// An error member in a success answer (GitHub, Slack).
		return tokenbroker.FailureRejected
	}
	return tokenbroker.FailureUncertain
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
// redacted, invalid UTF-8 becomes U+FFFD, and the result is cut to n bytes.
func scrub(s string, secrets []string, n int) string {
	if s == "" {
		return ""
	}
	// A form-encoded answer carries any bytes; what is kept is text.
	s = strings.ToValidUTF8(s, "\uFFFD")
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

// scrubCode keeps an error code that looks like one and holds none of the
// secrets (a server may put what it was sent in the error member).
func scrubCode(code string, secrets []string) string {
	if code == "" || codeRe.MatchString(code) && !tokenLike.MatchString(code) && !holdsSecret(code, secrets) {
		return code
	}
	return scrub(code, secrets, 64)
}

// holdsSecret reports whether s contains one of the secrets that scrub
// removes.
func holdsSecret(s string, secrets []string) bool {
	for _, sec := range secrets {
		if len(sec) >= 4 && (strings.Contains(s, sec) || strings.Contains(s, url.QueryEscape(sec))) {
			return true
		}
	}
	return false
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
