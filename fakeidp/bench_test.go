package fakeidp_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/fakeidp"
)

// benchRefresh refreshes rt once over HTTP and returns the new token, or
// "" after reporting an error (b.Fatal is not allowed in RunParallel).
func benchRefresh(b *testing.B, c *http.Client, tokenURL, rt string) string {
	req, _ := http.NewRequest(http.MethodPost, tokenURL,
		strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(fakeidp.DefaultClientID, fakeidp.DefaultClientSecret)
	resp, err := c.Do(req)
	if err != nil {
		b.Error(err)
		return ""
	}
	defer resp.Body.Close()
	var out struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.RefreshToken == "" {
		b.Errorf("refresh: %d %v", resp.StatusCode, err)
	}
	return out.RefreshToken
}

// BenchmarkRefresh measures one refresh (rotation) over loopback HTTP.
func BenchmarkRefresh(b *testing.B) {
	s := MustStart(b, fakeidp.Config{})
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	rt := MustIssue(b, s, "alice").RefreshToken
	for b.Loop() {
		if rt = benchRefresh(b, c, s.Endpoints().Token, rt); rt == "" {
			return
		}
	}
}

// BenchmarkRefreshParallel measures refreshes of distinct families from
// concurrent clients, as a benchmark of tokenbroker would drive it.
func BenchmarkRefreshParallel(b *testing.B) {
	s := MustStart(b, fakeidp.Config{})
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer c.CloseIdleConnections()
	b.RunParallel(func(pb *testing.PB) {
		tok, err := s.IssueToken("alice")
		if err != nil {
			b.Error(err)
			return
		}
		rt := tok.RefreshToken
		for pb.Next() {
			if rt = benchRefresh(b, c, s.Endpoints().Token, rt); rt == "" {
				return
			}
		}
	})
}

// BenchmarkIssueToken measures seeding a family through the Go API.
func BenchmarkIssueToken(b *testing.B) {
	s := MustStart(b, fakeidp.Config{})
	for b.Loop() {
		MustIssue(b, s, "alice")
	}
}
