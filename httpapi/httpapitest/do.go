package httpapitest

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Do sends a request with an optional bearer key and JSON body, plus
// header pairs ("Name", "value", ...), and returns the response with its
// body read and closed.
func Do(tb testing.TB, hc *http.Client, method, url, key, body string, header ...string) (*http.Response, []byte) {
	tb.Helper()
	resp, err := hc.Do(NewRequest(tb, method, url, key, body, header...))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp, b
}

// NewRequest is the request [Do] sends: with an optional bearer key and
// JSON body, plus header pairs ("Name", "value", ...; an empty value
// removes the header).
func NewRequest(tb testing.TB, method, url, key, body string, header ...string) *http.Request {
	tb.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		tb.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i]) // "" removes a header Do would send
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	return req
}
