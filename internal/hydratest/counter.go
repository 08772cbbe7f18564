package hydratest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
)

// Request is one request to Hydra's token or revocation endpoint, as the
// proxy saw it.
type Request struct {
	Path  string
	Grant string // grant_type of a token request
	// RefreshToken is the refresh token a refresh presented.
	RefreshToken string
	Status       int
	Error        string // the answer's "error" member, if any
}

// Stats counts what reached Hydra through the proxy.
type Stats struct {
	// Refreshes is the number of refresh_token grants sent: the provider
	// calls a client made.
	Refreshes int
	// RefreshFailures is the number of refreshes answered with an error.
	RefreshFailures int
	// ReusedRefreshTokens counts refresh tokens presented more than once.
	ReusedRefreshTokens int
	// CodeExchanges is the number of authorization_code grants.
	CodeExchanges int
	// Revocations is the number of RFC 7009 requests.
	Revocations int
}

// counter is a reverse proxy to Hydra's public API that records every
// token and revocation request.
type counter struct {
	rp *httputil.ReverseProxy

	mu   sync.Mutex
	reqs []Request
	seen map[string]int // refresh token -> times presented
}

func newCounter(target *url.URL) *counter {
	return &counter{rp: httputil.NewSingleHostReverseProxy(target), seen: map[string]int{}}
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || (r.URL.Path != "/oauth2/token" && r.URL.Path != "/oauth2/revoke") {
		c.rp.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	r.Body.Close()
	if err != nil {
		http.Error(w, "proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	c.rp.ServeHTTP(rec, r)

	req := Request{Path: r.URL.Path, Grant: form.Get("grant_type"), RefreshToken: form.Get("refresh_token"), Status: rec.status}
	var answer struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(rec.head.Bytes(), &answer) == nil {
		req.Error = answer.Error
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reqs = append(c.reqs, req)
	if req.Grant == "refresh_token" {
		c.seen[req.RefreshToken]++
	}
}

func (c *counter) stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s Stats
	for _, r := range c.reqs {
		switch {
		case r.Path == "/oauth2/revoke":
			s.Revocations++
		case r.Grant == "refresh_token":
			s.Refreshes++
			if r.Status != http.StatusOK {
				s.RefreshFailures++
			}
		case r.Grant == "authorization_code":
			s.CodeExchanges++
		}
	}
	for _, n := range c.seen {
		if n > 1 {
			s.ReusedRefreshTokens++
		}
	}
	return s
}

func (c *counter) requests() []Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Request(nil), c.reqs...)
}

func (c *counter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reqs = nil
	c.seen = map[string]int{}
}

// recorder keeps the status and the first 4 KiB of an answer.
type recorder struct {
	http.ResponseWriter
	status int
	head   bytes.Buffer
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if n := 4096 - r.head.Len(); n > 0 {
		r.head.Write(b[:min(n, len(b))])
	}
	return r.ResponseWriter.Write(b)
}
