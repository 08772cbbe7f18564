package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/tokenbroker/tokenbroker"
)

// MaxBodyBytes limits every request body.
const MaxBodyBytes = 64 << 10

// decodeJSON reads exactly one JSON object from the request body into v. It
// rejects bodies over [MaxBodyBytes] (413), a Content-Type other than JSON
// (415), unknown fields, and anything after the object (400), all with the
// code invalid_request. It reads the body before any change is made, so bad
// input changes nothing.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && mt != "application/merge-patch+json") {
			return tokenbroker.Errorf(codeUnsupportedMediaType, "the request body must be application/json")
		}
	}
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			if e := jsonError(err); tokenbroker.ErrorCode(e) == codePayloadTooLarge {
				return e
			}
		}
		return tokenbroker.Errorf(tokenbroker.EINVALID, "the request body must hold exactly one JSON object")
	}
	return nil
}

func jsonError(err error) error {
	var mbe *http.MaxBytesError
	var ute *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &mbe):
		return tokenbroker.Errorf(codePayloadTooLarge, "the request body is larger than %d bytes", MaxBodyBytes)
	case errors.Is(err, io.EOF):
		return tokenbroker.Errorf(tokenbroker.EINVALID, "the request body is empty; want a JSON object")
	case errors.As(err, &ute):
		if ute.Field != "" {
			return tokenbroker.Errorf(tokenbroker.EINVALID, "field %q has the wrong type", ute.Field)
		}
		return tokenbroker.Errorf(tokenbroker.EINVALID, "the request body must be a JSON object")
	case errors.As(err, &se):
		return tokenbroker.Errorf(tokenbroker.EINVALID, "malformed JSON at byte %d", se.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return tokenbroker.Errorf(tokenbroker.EINVALID, "truncated JSON body")
	}
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		// Names the field, never a value.
		return tokenbroker.Errorf(tokenbroker.EINVALID, "%s", tokenbroker.Truncate(strings.TrimPrefix(msg, "json: "), 120))
	}
	// Other messages (time parsing, ...) may quote the value: say less.
	return tokenbroker.Errorf(tokenbroker.EINVALID, "invalid JSON body")
}

// writeJSON sends v with status. Every answer is no-store: most carry
// secrets or per-user state.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Our own types always marshal; this is a programming error.
		panic("httpapi: marshal response: " + err.Error())
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
