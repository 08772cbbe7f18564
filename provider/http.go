package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// maxBody bounds every response body read (as x/oauth2 does).
const maxBody = 1 << 20

// styleNone sends client_id alone, without the secret (device
// authorization at GitHub).
const styleNone oauth2.AuthStyle = -1

// userAgent is sent with every request.
const userAgent = "tokenbroker"

// wrapClient returns a copy of c (or a default client) whose transport adds
// Accept: application/json (GitHub answers form-encoded without it) and a
// User-Agent to requests that lack them.
func wrapClient(c *http.Client) *http.Client {
	if c == nil {
		c = &http.Client{Timeout: 30 * time.Second}
	}
	cp := *c
	cp.Transport = &headerTransport{base: c.Transport}
	return &cp
}

type headerTransport struct{ base http.RoundTripper }

func (t *headerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.base
	if base == nil {
		base = http.DefaultTransport
	}
	if req.Header.Get("Accept") == "" || req.Header.Get("User-Agent") == "" {
		req = req.Clone(req.Context()) // a RoundTripper must not modify req
		if req.Header.Get("Accept") == "" {
			req.Header.Set("Accept", "application/json")
		}
		if req.Header.Get("User-Agent") == "" {
			req.Header.Set("User-Agent", userAgent)
		}
	}
	return base.RoundTrip(req)
}

// CloseIdleConnections closes the base transport's idle connections.
func (t *headerTransport) CloseIdleConnections() {
	type closer interface{ CloseIdleConnections() }
	base := t.base
	if base == nil {
		base = http.DefaultTransport
	}
	if c, ok := base.(closer); ok {
		c.CloseIdleConnections()
	}
}

// newFormRequest is a POST of form with the client authentication of style
// (RFC 6749 §2.3.1): HTTP Basic with both parts form-encoded for
// AuthStyleInHeader, client_id and client_secret parameters for
// AuthStyleInParams, client_id alone for styleNone.
func (p *oauthProvider) newFormRequest(ctx context.Context, target string, form url.Values, style oauth2.AuthStyle) (*http.Request, error) {
	v := url.Values{}
	for k, vv := range form {
		v[k] = append([]string(nil), vv...)
	}
	switch style {
	case oauth2.AuthStyleInParams:
		v.Set("client_id", p.pc.ClientID)
		if p.secret != "" {
			v.Set("client_secret", p.secret)
		}
	case styleNone:
		v.Set("client_id", p.pc.ClientID)
	case oauth2.AuthStyleInHeader:
		v.Del("client_id")
	default:
		return nil, errors.New("provider: auth style must be explicit")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(v.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if style == oauth2.AuthStyleInHeader {
		req.SetBasicAuth(url.QueryEscape(p.pc.ClientID), url.QueryEscape(p.secret))
	}
	return req, nil
}

// retrieve sends one token request (RFC 6749 §4.1.3, §6; RFC 8628 §3.4)
// and parses the answer the way x/oauth2 does: an error is an
// *oauth2.RetrieveError when the status is not 2xx or the body has an
// "error" member (GitHub and Slack answer errors with HTTP 200). For Slack
// a user token nested in authed_user is lifted to the top. A missing
// refresh_token keeps the one sent. It never retries.
func (p *oauthProvider) retrieve(ctx context.Context, ep endpoints, form url.Values) (*oauth2.Token, error) {
	req, err := p.newFormRequest(ctx, ep.token, form, ep.style)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("reading the token response: %w", err)
	}
	raw, isJSON := parseBody(resp.Header.Get("Content-Type"), body)
	failed := resp.StatusCode < 200 || resp.StatusCode > 299
	re := &oauth2.RetrieveError{Response: resp, Body: body}
	if raw == nil {
		if failed {
			return nil, re
		}
		return nil, errors.New("oauth2: cannot parse the token response")
	}
	re.ErrorCode, _ = stringOf(raw["error"])
	re.ErrorDescription, _ = stringOf(raw["error_description"])
	re.ErrorURI, _ = stringOf(raw["error_uri"])
	if failed || re.ErrorCode != "" {
		return nil, re
	}
	if p.spec.slackEnvelope {
		if user, ok := raw["authed_user"].(map[string]any); ok {
			if at, _ := stringOf(raw["access_token"]); at == "" {
				for k, v := range user {
					raw[k] = v
				}
			}
		}
	}
	at, _ := stringOf(raw["access_token"])
	if at == "" {
		return nil, errors.New("oauth2: server response missing access_token")
	}
	ot := &oauth2.Token{AccessToken: at}
	ot.TokenType, _ = stringOf(raw["token_type"])
	ot.RefreshToken, _ = stringOf(raw["refresh_token"])
	if ot.RefreshToken == "" {
		ot.RefreshToken = form.Get("refresh_token")
	}
	if n, ok := intOf(raw["expires_in"]); ok {
		ot.ExpiresIn = n
	}
	if isJSON {
		return ot.WithExtra(raw), nil
	}
	vals := url.Values{}
	for k, v := range raw {
		s, _ := stringOf(v)
		vals.Set(k, s)
	}
	return ot.WithExtra(vals), nil
}

// parseBody parses a JSON object or, for form and text content types, a
// query string. raw is nil when the body is neither.
func parseBody(contentType string, body []byte) (raw map[string]any, isJSON bool) {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case "application/x-www-form-urlencoded", "text/plain":
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, false
		}
		raw = map[string]any{}
		for k := range vals {
			raw[k] = vals.Get(k)
		}
		return raw, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, true
	}
	return raw, true
}

// postJSON POSTs form with the client authentication of style and decodes
// a 2xx JSON answer into out; any other answer is an *httpError.
func (p *oauthProvider) postJSON(ctx context.Context, target string, form url.Values, style oauth2.AuthStyle, out any) error {
	req, err := p.newFormRequest(ctx, target, form, style)
	if err != nil {
		return err
	}
	return p.do(req, out)
}

// do sends req and decodes a 2xx JSON answer into out (if not nil). Any
// other answer is an *httpError carrying the error and error_description
// (or GitHub's message) members.
func (p *oauthProvider) do(req *http.Request, out any) error {
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("reading the response: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		he := &httpError{status: resp.StatusCode, header: resp.Header}
		if raw, _ := parseBody(resp.Header.Get("Content-Type"), body); raw != nil {
			he.code, _ = stringOf(raw["error"])
			he.description, _ = stringOf(raw["error_description"])
			if he.description == "" {
				he.description, _ = stringOf(raw["message"])
			}
		}
		return he
	}
	if out == nil || len(bytes.TrimSpace(body)) == 0 && resp.StatusCode == http.StatusNoContent {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("decoding the answer of %s: not a JSON object", req.URL.Redacted())
	}
	return nil
}

// jsonInt is an integer member that some servers send as a string.
type jsonInt int64

func (n *jsonInt) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	i, _ := intOf(v)
	*n = jsonInt(i)
	return nil
}

// stringOf renders a JSON or form value as a string: numbers without an
// exponent, objects and arrays as JSON.
func stringOf(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", false
	case string:
		return x, x != ""
	case json.Number:
		return x.String(), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case bool:
		return strconv.FormatBool(x), true
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", false
	}
	return string(b), true
}

// intOf reads an integer given as a number or a decimal string.
func intOf(v any) (int64, bool) {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n, true
		}
		if f, err := x.Float64(); err == nil {
			return int64(f), true
		}
	case float64:
		return int64(x), true
	case int64:
		return x, true
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return n, err == nil
	}
	return 0, false
}

// extraString is ot.Extra(key) as a string, "" and false when absent.
func extraString(ot *oauth2.Token, key string) (string, bool) {
	return stringOf(ot.Extra(key))
}

// extraInt is ot.Extra(key) as an integer.
func extraInt(ot *oauth2.Token, key string) (int64, bool) {
	return intOf(ot.Extra(key))
}
