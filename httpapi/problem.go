package httpapi

import (
	"cmp"
	"context"
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
// gave no hint; StoreRetryAfter with store_unavailable.
const (
	DefaultRetryAfter = 5 * time.Second
	StoreRetryAfter   = 2 * time.Second
)

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
	case tokenbroker.EPROVIDERUNAVAILABLE, tokenbroker.EPROVIDERMISCONFIGURED, tokenbroker.ESTOREUNAVAILABLE:
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
// with their detail and sent with a generic one; a database that cannot be
// reached is logged at warn and answered 503 store_unavailable. A
// [*tokenbroker.ProviderError] that reaches here is classified: transient
// ones are provider_unavailable, others internal (a misconfigured provider
// is the operator's problem, not the caller's). A caller that went away is
// not a server error: it is logged at debug and sent nothing useful.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "client went away", slog.String("pattern", r.Pattern))
		w.WriteHeader(StatusClientClosedRequest)
		return
	}
	p := s.problemFor(err)
	switch {
	case p.Status == http.StatusInternalServerError:
		s.log.LogAttrs(r.Context(), slog.LevelError, "internal error",
			slog.String("pattern", r.Pattern), slog.String("err", err.Error()))
	case p.Code == tokenbroker.ESTOREUNAVAILABLE:
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "database unavailable",
			slog.String("pattern", r.Pattern), slog.String("err", err.Error()))
	}
	s.writeProblem(w, p)
}

// StatusClientClosedRequest is what the request log records for a caller
// that went away before the answer (nginx's 499); nobody receives it.
const StatusClientClosedRequest = 499

func (s *Server) problemFor(err error) Problem {
	var pe *tokenbroker.ProviderError
	if errors.As(err, &pe) && tokenbroker.ErrorCode(err) == tokenbroker.EINTERNAL {
		if pe.Transient() {
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
	var (
		ra time.Duration
		ue *tokenbroker.ProviderUnavailableError
		me *tokenbroker.ProviderMisconfiguredError
	)
	switch {
	case errors.As(err, &ue):
		ra = cmp.Or(ue.RetryAfter, DefaultRetryAfter)
	case errors.As(err, &me):
		ra = cmp.Or(me.RetryAfter, DefaultRetryAfter)
	case code == tokenbroker.ESTOREUNAVAILABLE:
		ra = StoreRetryAfter
	}
	if ra > 0 {
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
