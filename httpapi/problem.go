package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/go-json-experiment/json"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apiv1"
)

// ProblemTypePrefix starts the "type" URI of every problem document; the
// code follows it. Tag URIs (RFC 4151) are the identifiers RFC 9457 §3.1.1
// suggests for types that need not resolve; docs/api.md describes each.
const ProblemTypePrefix = "tag:tokenbroker.dev,2026:problem:"

// Problem is an RFC 9457 problem document (see [apiv1.Problem]).
type Problem = apiv1.Problem

// DefaultRetryAfter is sent with provider_unavailable when the provider
// gave no hint.
const DefaultRetryAfter = 5 * time.Second

// StatusOf maps an error code to its HTTP status. It is the one place
// where codes meet statuses; docs/api.md lists the same table.
func StatusOf(code string) int {
	switch code {
	case tokenbroker.EINVALID:
		return http.StatusBadRequest
	case tokenbroker.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case tokenbroker.EFORBIDDEN:
		return http.StatusForbidden
	case tokenbroker.ENOTFOUND:
		return http.StatusNotFound
	case tokenbroker.ECONFLICT:
		return http.StatusConflict
	case tokenbroker.EREAUTHREQUIRED:
		// 409: the request conflicts with the state of the link, which
		// only the user can resolve (by connecting again). The code tells
		// it apart from a plain conflict.
		return http.StatusConflict
	case tokenbroker.EPROVIDERUNAVAILABLE:
		return http.StatusServiceUnavailable
	case tokenbroker.ENOTIMPLEMENTED:
		return http.StatusNotImplemented
	case codePayloadTooLarge:
		return http.StatusRequestEntityTooLarge
	case codeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case codeUnsupportedMediaType:
		return http.StatusUnsupportedMediaType
	}
	return http.StatusInternalServerError
}

// Internal pseudo-codes for statuses that are sent with the code
// invalid_request; they only select the status.
const (
	codePayloadTooLarge      = "invalid_request:too_large"
	codeMethodNotAllowed     = "invalid_request:method"
	codeUnsupportedMediaType = "invalid_request:media_type"
)

// writeError sends err as a problem document. Internal errors are logged
// with their detail and sent with a generic one. A
// [*tokenbroker.ProviderError] that reaches here is classified: transient
// ones are provider_unavailable, permanent ones internal (a misconfigured
// provider is the operator's problem, not the caller's).
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	p := s.problemFor(err)
	if p.Status == http.StatusInternalServerError {
		s.log.LogAttrs(r.Context(), slog.LevelError, "internal error",
			slog.String("pattern", r.Pattern), slog.String("err", err.Error()))
	}
	s.writeProblem(w, p)
}

func (s *Server) problemFor(err error) Problem {
	var pe *tokenbroker.ProviderError
	if errors.As(err, &pe) && tokenbroker.ErrorCode(err) == tokenbroker.EINTERNAL {
		if !pe.Permanent {
			err = &tokenbroker.ProviderUnavailableError{ProviderID: pe.ProviderID, RetryAfter: pe.RetryAfter, Cause: pe}
		}
	}
	code := tokenbroker.ErrorCode(err)
	status := StatusOf(code)
	p := Problem{Status: status, Title: http.StatusText(status), Code: publicCode(code)}
	p.Type = ProblemTypePrefix + p.Code
	if status == http.StatusInternalServerError {
		p.Code = tokenbroker.EINTERNAL
		p.Type = ProblemTypePrefix + p.Code
		p.Detail = "Internal error. The server logged the details."
		return p
	}
	p.Detail = tokenbroker.ErrorMessage(err)
	var re *tokenbroker.ReauthRequiredError
	if errors.As(err, &re) {
		p.ConnectURL = re.ConnectURL
		if p.ConnectURL == "" {
			p.Detail += ". Send the user to the url of a new connect session (POST /api/v1/connect-sessions)."
		}
	}
	var ue *tokenbroker.ProviderUnavailableError
	if errors.As(err, &ue) {
		ra := ue.RetryAfter
		if ra <= 0 {
			ra = DefaultRetryAfter
		}
		p.RetryAfter = int((ra + time.Second - 1) / time.Second)
	}
	return p
}

func publicCode(code string) string {
	switch code {
	case codePayloadTooLarge, codeMethodNotAllowed, codeUnsupportedMediaType:
		return tokenbroker.EINVALID
	}
	return code
}

func (s *Server) writeProblem(w http.ResponseWriter, p Problem) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if p.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(p.RetryAfter))
	}
	if p.Status == http.StatusUnauthorized {
		// RFC 6750 §3.
		h.Set("WWW-Authenticate", `Bearer realm="tokenbroker"`)
	}
	b, _ := json.Marshal(p)
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(b, '\n'))
}
