package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/idptest"
)

// serve reads the workload_identities section of its configuration file,
// trusts its issuer on the exchange and the REST API, and exposes the
// authentication failure counter on /metrics.
func TestServeWorkloadIdentities(t *testing.T) {
	idp := idptest.MustStart(t, fakeidp.Config{OIDC: true})
	dir := t.TempDir()
	cfgFile := writeFile(t, dir, "tb.yaml", `providers:
  - id: demo
    kind: oauth2
    client_id: c
    auth_url: `+idp.Endpoints().Authorize+`
    token_url: `+idp.Endpoints().Token+`
workload_identities:
  - id: ci
    issuer: `+idp.URL()+`
    audience: tb
    users: [alice]
    providers: [demo]
`)
	cfg := defaultServeConfig()
	cfg.DataDir, cfg.ProvidersFile, cfg.BaseURL = filepath.Join(dir, "data"), cfgFile, "http://127.0.0.1:1"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := buildApp(t.Context(), cfg, slog.New(slog.DiscardHandler), appOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	srv := httptest.NewServer(a.handler)
	defer srv.Close()

	jwt, err := idp.MintWorkloadJWT(fakeidp.WorkloadClaims{Subject: "job", Audience: []string{"tb"}})
	if err != nil {
		t.Fatal(err)
	}
	// alice has no link: the JWT is accepted, the link is missing.
	resp, err := srv.Client().PostForm(srv.URL+"/oauth2/token", url.Values{
		"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {jwt},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "audience": {"demo"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), "has no link to demo") {
		t.Fatalf("exchange: %d %s", resp.StatusCode, body)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/users/alice/providers/demo/token", nil)
	req.Header.Set("Authorization", "Bearer "+jwt[:len(jwt)-4]+"AAAA")
	resp, err = srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("a forged JWT: %d", resp.StatusCode)
	}
	resp, err = srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `tokenbroker_auth_failures_total{reason="jwt_signature"} 1`) {
		t.Fatalf("/metrics lacks the failure:\n%s", body)
	}
	srv.Client().CloseIdleConnections()
}
