package httpapi

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/tokenbroker/tokenbroker"
)

// MaxBodyBytes limits every request body.
const MaxBodyBytes = 64 << 10

// decodeJSON reads exactly one JSON object from the request body into v,
// with encoding/json/v2 semantics: member names match exactly (no case
// folding), a duplicate member is refused, and so is an unknown one or
// invalid UTF-8. It answers 413 for a body over [MaxBodyBytes], 415 for a
// Content-Type other than application/json (a missing one too), and 400
// for anything else that is not one well-formed object of the expected
// shape; errors name the member at fault, never a value. It reads the
// whole body before any change is made, so bad input changes nothing.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return tokenbroker.Errorf(codeUnsupportedMediaType, "the request body must be application/json (Content-Type: application/json)")
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tokenbroker.Errorf(codePayloadTooLarge, "the request body is larger than %d bytes", MaxBodyBytes)
		}
		return tokenbroker.Errorf(tokenbroker.EINVALID, "cannot read the request body")
	}
	switch body := strings.TrimLeft(string(b), " \t\r\n"); {
	case body == "":
		return tokenbroker.Errorf(tokenbroker.EINVALID, "the request body is empty; want a JSON object")
	case body[0] != '{':
		return tokenbroker.Errorf(tokenbroker.EINVALID, "the request body must hold exactly one JSON object")
	}
	if err := json.Unmarshal(b, v, json.RejectUnknownMembers(true)); err != nil {
		return jsonError(err)
	}
	return nil
}

// jsonError describes a decoding error by the member it concerns (a JSON
// pointer names it) and never quotes a value, which could be a secret.
func jsonError(err error) error {
	var se *json.SemanticError
	var syn *jsontext.SyntacticError
	switch {
	case errors.Is(err, json.ErrUnknownName):
		return tokenbroker.Errorf(tokenbroker.EINVALID, "unknown member %s", memberName(err))
	case errors.Is(err, jsontext.ErrDuplicateName):
		return tokenbroker.Errorf(tokenbroker.EINVALID, "duplicate member %s", memberName(err))
	case errors.As(err, &se):
		return tokenbroker.Errorf(tokenbroker.EINVALID, "member %s has the wrong type or format%s", memberName(err), formatHint(se))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return tokenbroker.Errorf(tokenbroker.EINVALID, "truncated JSON body")
	case errors.As(err, &syn):
		return tokenbroker.Errorf(tokenbroker.EINVALID, "malformed JSON at byte %d", syn.ByteOffset)
	}
	return tokenbroker.Errorf(tokenbroker.EINVALID, "invalid JSON body")
}

// memberName quotes the JSON pointer of the member err concerns (for an
// unknown or duplicate member, the member itself), truncated.
func memberName(err error) string {
	var p jsontext.Pointer
	var se *json.SemanticError
	var syn *jsontext.SyntacticError
	switch {
	case errors.As(err, &se):
		p = se.JSONPointer
	case errors.As(err, &syn):
		p = syn.JSONPointer
	}
	tokens := slices.Collect(p.Tokens())
	name := strings.Join(tokens, ".")
	if name == "" {
		name = "(the object)"
	}
	return `"` + tokenbroker.Truncate(name, 80) + `"`
}

// formatHint says what a time member wants.
func formatHint(se *json.SemanticError) string {
	if se.GoType != nil && se.GoType.String() == "time.Time" {
		return ": want an RFC 3339 time such as 2026-01-02T15:04:05Z"
	}
	return ""
}

// checkQuery refuses query parameters other than allowed, and a repeated
// one: a typo must not be silently ignored.
func checkQuery(q url.Values, allowed ...string) error {
	for key, vs := range q {
		if !slices.Contains(allowed, key) {
			return tokenbroker.Errorf(tokenbroker.EINVALID, "unknown query parameter %q", tokenbroker.Truncate(key, 40))
		}
		if len(vs) > 1 {
			return tokenbroker.Errorf(tokenbroker.EINVALID, "query parameter %q given %d times", key, len(vs))
		}
	}
	return nil
}

// writeJSON sends v with status. Every answer is no-store: most carry
// secrets or per-user state.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Our own types always marshal; this is a programming error.
		panic("httpapi: marshal response: " + err.Error())
	}
	writeJSONBytes(w, status, append(b, '\n'))
}

// The header values of every JSON answer, shared by all answers so that
// setting them allocates nothing. Nobody modifies a header value in place
// (Set and Add replace or append), so sharing them is safe.
var (
	headerJSON    = []string{"application/json"}
	headerNoStore = []string{"no-store"}
	headerNoSniff = []string{"nosniff"}
	headerNoCache = []string{"no-cache"}
)

// writeJSONBytes sends the JSON body b (ending in a newline) with status
// and writeJSON's headers.
func writeJSONBytes(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h["Content-Type"] = headerJSON
	h["Cache-Control"] = headerNoStore
	h["X-Content-Type-Options"] = headerNoSniff
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
