package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json"

	"github.com/tokenbroker/tokenbroker/apiv1"
)

// Client calls a tokenbroker server's API with one API key. It is safe for
// concurrent use.
type Client struct {
	base      string
	key       string
	hc        *http.Client
	userAgent string
}

// Option configures a [Client].
type Option func(*Client)

// WithHTTPClient makes the client send its requests with hc (default: a
// client with a 30s timeout on top of http.DefaultTransport).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// New returns a client for the server at baseURL (for example
// "https://tokenbroker.internal") authenticating with apiKey.
func New(baseURL, apiKey string, opts ...Option) *Client {
	c := &Client{
		base:      strings.TrimRight(baseURL, "/"),
		key:       apiKey,
		hc:        &http.Client{Timeout: 30 * time.Second},
		userAgent: "tokenbroker-go-client",
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Error is an error answer of the API: its RFC 9457 problem document.
// Code is one of the stable codes of docs/api.md ("unauthorized",
// "forbidden", "not_found", "invalid_request", "reauth_required",
// "provider_unavailable", "conflict", "internal"). ConnectURL is set with
// reauth_required when the server made a connect session for the user;
// RetryAfter with provider_unavailable.
type Error struct {
	Status     int
	Code       string
	Title      string
	Detail     string
	ConnectURL string
	RetryAfter time.Duration
}

// Error implements the error interface.
func (e *Error) Error() string {
	s := fmt.Sprintf("tokenbroker: %d %s", e.Status, e.Code)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Error codes, as in [Error.Code].
const (
	CodeUnauthorized        = "unauthorized"
	CodeForbidden           = "forbidden"
	CodeNotFound            = "not_found"
	CodeInvalidRequest      = "invalid_request"
	CodeReauthRequired      = "reauth_required"
	CodeProviderUnavailable = "provider_unavailable"
	CodeConflict            = "conflict"
	CodeInternal            = "internal"
)

// IsCode reports whether err is an [*Error] with the given code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// maxResponseBytes bounds how much of a response is read.
const maxResponseBytes = 4 << 20

// call sends a request and returns its decoded JSON answer (see
// [Client.do]).
func call[T any](ctx context.Context, c *Client, method, path string, query url.Values, in any) (*T, error) {
	var out T
	if err := c.do(ctx, method, path, query, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// do sends a request and decodes a JSON answer into out (when not nil).
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("tokenbroker: encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("tokenbroker: %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, data, err := c.send(req, maxResponseBytes)
	if err != nil {
		return fmt.Errorf("tokenbroker: %w", err)
	}
	if resp.StatusCode >= 300 {
		return problem(resp, data)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("tokenbroker: %s %s: decode response: %w", method, path, err)
	}
	return nil
}

// send adds the headers every request carries (Accept, User-Agent) to req,
// sends it and reads at most limit bytes of the answer's body.
func (c *Client) send(req *http.Request, limit int64) (*http.Response, []byte, error) {
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.hc.Do(req)
	if err != nil {
		// net/http's error names the URL, which holds no secret (the key
		// travels in a header).
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: read response: %w", req.Method, req.URL.Path, err)
	}
	return resp, body, nil
}

// retryAfter is the delay of a Retry-After header in seconds (RFC 9110
// §10.2.3), 0 when there is none.
func retryAfter(h http.Header) time.Duration {
	if n, err := strconv.Atoi(h.Get("Retry-After")); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return 0
}

// problem turns an error answer into an [*Error], from its problem
// document when it has one.
func problem(resp *http.Response, data []byte) *Error {
	e := &Error{Status: resp.StatusCode}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "application/problem+json" || mt == "application/json" {
		var p apiv1.Problem
		if json.Unmarshal(data, &p) == nil {
			e.Code, e.Title, e.Detail, e.ConnectURL = p.Code, p.Title, p.Detail, p.ConnectURL
			e.RetryAfter = time.Duration(p.RetryAfter) * time.Second
		}
	}
	if e.RetryAfter == 0 {
		e.RetryAfter = retryAfter(resp.Header)
	}
	if e.Code == "" {
		e.Code = codeForStatus(resp.StatusCode)
	}
	if e.Title == "" {
		e.Title = http.StatusText(resp.StatusCode)
	}
	return e
}

func codeForStatus(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return CodeUnauthorized
	case http.StatusForbidden:
		return CodeForbidden
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusConflict:
		return CodeConflict
	case http.StatusServiceUnavailable:
		return CodeProviderUnavailable
	}
	if status >= 400 && status < 500 {
		return CodeInvalidRequest
	}
	return CodeInternal
}

func userPath(userID string, rest ...string) string {
	p := "/api/v1/users/" + url.PathEscape(userID)
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}
