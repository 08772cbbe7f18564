package httpapi

import (
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apiv1"
)

// MaxMinValid bounds the min_valid parameter of the token endpoint.
const MaxMinValid = 24 * time.Hour

// getToken is the hot path: authenticate (cached), authorize, one call to
// the TokenService, one non-blocking audit record, no store write.
func (s *Server) getToken(w http.ResponseWriter, r *http.Request, k *caller) error {
	userID, providerID, err := tokenIDs(w, r)
	if err != nil {
		return err
	}
	if err := authorize(k, tokenbroker.ScopeTokensRead, userID, providerID); err != nil {
		return err
	}
	minValid, err := parseMinValid(r)
	if err != nil {
		return err
	}
	tok, err := s.tokens.Token(r.Context(), providerID, userID, minValid)
	s.audit(k, tokenbroker.AuditTokenRead, userID, providerID, err, "")
	if err != nil {
		if tokenbroker.IsNotFound(err) {
			return s.notFoundDetail(providerID)
		}
		return s.withConnectURL(r, k, userID, providerID, err)
	}
	resp := apiv1.Token{
		AccessToken: tok.AccessToken,
		TokenType:   tok.TokenType,
		Expiry:      tok.Expiry.UTC(),
		Scopes:      tok.Scopes,
		Extra:       tok.Extra,
	}
	if resp.TokenType == "" {
		resp.TokenType = "Bearer"
	}
	w.Header()["Pragma"] = headerNoCache // RFC 6749 §5.1, with writeJSON's no-store
	buf := tokenBuffers.Get().(*[]byte)
	defer tokenBuffers.Put(buf)
	b, err := appendTokenJSON((*buf)[:0], &resp)
	if err != nil {
		// What json.Marshal refuses (invalid UTF-8 in a provider's token,
		// a year past 9999) it refuses with its own error.
		writeTokenMarshal(w, resp)
		return nil
	}
	*buf = append(b, '\n')
	writeJSONBytes(w, http.StatusOK, *buf)
	return nil
}

// tokenBuffers holds the token answer's buffers: the response writer
// copies the body, so a buffer is reused once Write returned.
var tokenBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// writeTokenMarshal sends resp through json.Marshal, whose refusal panics
// like any answer that does not marshal.
func writeTokenMarshal(w http.ResponseWriter, resp apiv1.Token) {
	writeJSON(w, http.StatusOK, &resp)
}

// tokenIDs returns the token path's user and provider ids: those
// ServeHTTP found when it routed the request itself, else the mux's path
// values; each validated.
func tokenIDs(w http.ResponseWriter, r *http.Request) (userID, providerID string, err error) {
	rec, ok := w.(*recorder)
	if !ok || rec.userID == "" {
		return pathIDs(r)
	}
	if err := tokenbroker.ValidateUserID(rec.userID); err != nil {
		return "", "", err
	}
	if err := tokenbroker.ValidateProviderID(rec.providerID); err != nil {
		return "", "", err
	}
	return rec.userID, rec.providerID, nil
}

// appendTokenJSON appends t as json.Marshal writes it (members in
// declaration order, a nil Scopes as [], Extra's members sorted), without
// reflection: the token answer is the hot path's one body. It returns an
// error where json.Marshal would (invalid UTF-8, a year outside 0-9999);
// TestTokenJSONMatchesMarshal holds the two to the same bytes.
func appendTokenJSON(b []byte, t *apiv1.Token) ([]byte, error) {
	var err error
	b = append(b, `{"access_token":`...)
	if b, err = jsontext.AppendQuote(b, t.AccessToken); err != nil {
		return nil, err
	}
	b = append(b, `,"token_type":`...)
	if b, err = jsontext.AppendQuote(b, t.TokenType); err != nil {
		return nil, err
	}
	if !t.Expiry.IsZero() {
		if y := t.Expiry.Year(); y < 0 || y > 9999 {
			return nil, errors.New("expiry year outside 0-9999")
		}
		b = append(b, `,"expiry":"`...)
		b = t.Expiry.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	b = append(b, `,"scopes":[`...)
	for i, sc := range t.Scopes {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = jsontext.AppendQuote(b, sc); err != nil {
			return nil, err
		}
	}
	b = append(b, ']')
	if len(t.Extra) > 0 {
		b = append(b, `,"extra":{`...)
		for i, k := range slices.Sorted(maps.Keys(t.Extra)) {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = jsontext.AppendQuote(b, k); err != nil {
				return nil, err
			}
			b = append(b, ':')
			if b, err = jsontext.AppendQuote(b, t.Extra[k]); err != nil {
				return nil, err
			}
		}
		b = append(b, '}')
	}
	return append(b, '}'), nil
}

// notFoundDetail says which of link or provider is missing, and how to
// make the link.
func (s *Server) notFoundDetail(providerID string) error {
	if _, err := s.providers.Provider(providerID); err != nil {
		return tokenbroker.Errorf(tokenbroker.ENOTFOUND, "no provider %q is configured", providerID)
	}
	return tokenbroker.Errorf(tokenbroker.ENOTFOUND, "the user has no link to %s: connect one through a connect session (POST /api/v1/connect-sessions) or the device flow", providerID)
}

// parseMinValid reads min_valid: a Go duration ("90s", "5m") or a number
// of seconds, from 0 to [MaxMinValid].
func parseMinValid(r *http.Request) (time.Duration, error) {
	if r.URL.RawQuery == "" {
		return 0, nil
	}
	v := r.URL.Query().Get("min_valid")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.ParseInt(v, 10, 64)
		if nerr != nil || n < 0 || n > int64(MaxMinValid/time.Second) {
			return 0, tokenbroker.Errorf(tokenbroker.EINVALID, "min_valid: want a duration such as 300s or 5m, or a number of seconds, up to 24h")
		}
		d = time.Duration(n) * time.Second
	}
	if d < 0 || d > MaxMinValid {
		return 0, tokenbroker.Errorf(tokenbroker.EINVALID, "min_valid: want a duration from 0 to 24h")
	}
	return d, nil
}

// withConnectURL gives a reauth_required error the URL to send the user
// to: a connect session for the user and provider (the same one again
// while it is open and unused, see reauthSession), when the caller may
// create one (links:write for them). Otherwise the problem's detail says
// how to get one.
func (s *Server) withConnectURL(r *http.Request, k *caller, userID, providerID string, err error) error {
	var re *tokenbroker.ReauthRequiredError
	if !errors.As(err, &re) || re.ConnectURL != "" {
		return err
	}
	if authorize(k, tokenbroker.ScopeLinksWrite, userID, providerID) != nil {
		return err
	}
	sess, cerr := s.reauthSession(r.Context(), k, userID, providerID)
	if cerr != nil {
		s.log.WarnContext(r.Context(), "cannot create connect session for reauth_required", "err", cerr.Error())
		return err
	}
	out := *re
	out.ConnectURL = s.connectURL(sess.ID)
	return &out
}
