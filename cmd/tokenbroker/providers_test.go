package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/idptest"
)

// runProvidersCheck runs `tokenbroker providers check args...` with the
// given TOKENBROKER_PROVIDER_* environment and returns the exit code and
// the combined output.
func runProvidersCheck(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	old := providersEnviron
	providersEnviron = func() []string { return env }
	t.Cleanup(func() { providersEnviron = old })
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"providers", "check"}, args...), &out, &errOut)
	return code, out.String() + errOut.String()
}

const (
	inlineSecret = "inline-secret-4f1c9a7e2b"
	fileSecret   = "file-secret-8d2e6b0a4c"
	envSecret    = "env-secret-1a3c5e7g9i"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func assertNoSecret(t *testing.T, out string) {
	t.Helper()
	for _, s := range []string{inlineSecret, fileSecret, envSecret} {
		if strings.Contains(out, s) {
			t.Fatalf("the output shows a secret:\n%s", out)
		}
	}
}

func TestProvidersCheck(t *testing.T) {
	dir := t.TempDir()
	secretFile := writeFile(t, dir, "gh-secret", fileSecret+"\n")
	cfg := writeFile(t, dir, "providers.yaml", `providers:
  - id: github
    kind: github
    client_id: Iv1.abc
    client_secret_file: `+secretFile+`
  - id: gitlab-corp
    kind: gitlab
    base_url: https://gitlab.corp.example
    client_id: gl
    client_secret: `+inlineSecret+`
`)
	env := []string{
		"TOKENBROKER_PROVIDER_GOOGLE_KIND=google",
		"TOKENBROKER_PROVIDER_GOOGLE_CLIENT_ID=123.apps.googleusercontent.com",
		"TOKENBROKER_PROVIDER_GOOGLE_CLIENT_SECRET=" + envSecret,
	}
	code, out := runProvidersCheck(t, env, "--config", cfg)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	assertNoSecret(t, out)
	for _, want := range []string{
		"github", "https://github.com/login/oauth/access_token", "from file " + secretFile,
		"gitlab-corp", "https://gitlab.corp.example/oauth/token", `gitlab\.corp\.example`,
		"google", "https://oauth2.googleapis.com/token", "set (inline or environment)",
		"3 provider(s) OK",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestProvidersCheckInvalid(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "providers.yaml", `providers:
  - id: gh
    kind: github
    client_secret: `+inlineSecret+`
    client_secret_file: /nonexistent
  - id: corp
    kind: oauth2
    client_id: x
    token_url: http://idp.example/token
`)
	code, out := runProvidersCheck(t, nil, "--config", cfg)
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	assertNoSecret(t, out)
	for _, want := range []string{"provider gh: client_id: required", "provider gh: client_secret: set client_secret or client_secret_file, not both",
		"provider corp: auth_url: required", "provider corp: token_url: http://idp.example/token: must use https"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// An unreadable secret file is reported without failing the others.
	cfg = writeFile(t, dir, "p2.yaml", "providers:\n  - id: gh\n    kind: github\n    client_id: x\n    client_secret_file: "+filepath.Join(dir, "missing")+"\n")
	if code, out := runProvidersCheck(t, nil, "--config", cfg); code != 1 || !strings.Contains(out, "cannot read") {
		t.Errorf("exit %d:\n%s", code, out)
	}
	// Nothing configured.
	if code, out := runProvidersCheck(t, nil); code != 1 || !strings.Contains(out, "no provider configured") {
		t.Errorf("exit %d:\n%s", code, out)
	}
	// A misspelt environment override.
	if code, out := runProvidersCheck(t, []string{"TOKENBROKER_PROVIDER_GH_CLIENTSECRET=" + envSecret}); code != 1 || !strings.Contains(out, "unknown provider field") {
		t.Errorf("exit %d:\n%s", code, out)
	} else {
		assertNoSecret(t, out)
	}
}

// mustOnlineIssuers starts an OIDC fakeidp (closed at cleanup) and returns
// it with the URL of a server that is down, the two issuers --online
// meets.
func mustOnlineIssuers(t *testing.T) (idp *fakeidp.Server, downURL string) {
	t.Helper()
	idp = idptest.MustStart(t, fakeidp.Config{OIDC: true})
	down := httptest.NewServer(nil)
	down.Close()
	return idp, down.URL
}

func TestProvidersCheckOnline(t *testing.T) {
	idp, downURL := mustOnlineIssuers(t)

	env := []string{
		"TOKENBROKER_PROVIDER_SSO_KIND=oidc",
		"TOKENBROKER_PROVIDER_SSO_ISSUER=" + idp.URL(),
		"TOKENBROKER_PROVIDER_SSO_CLIENT_ID=c",
		"TOKENBROKER_PROVIDER_SSO_CLIENT_SECRET=" + envSecret,
	}
	code, out := runProvidersCheck(t, env, "--online")
	if code != 0 || !strings.Contains(out, "discovery") || !strings.Contains(out, idp.Endpoints().Token) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	assertNoSecret(t, out)

	env = append(env, "TOKENBROKER_PROVIDER_DOWN_KIND=oidc", "TOKENBROKER_PROVIDER_DOWN_ISSUER="+downURL, "TOKENBROKER_PROVIDER_DOWN_CLIENT_ID=c")
	code, out = runProvidersCheck(t, env, "--online")
	if code != 1 || !strings.Contains(out, "FAILED") {
		t.Fatalf("exit %d, want 1 with a failed discovery:\n%s", code, out)
	}
	// Offline, the same configuration is valid.
	if code, out := runProvidersCheck(t, env); code != 0 {
		t.Fatalf("offline exit %d:\n%s", code, out)
	}
}

// The workload_identities section is validated with the providers,
// printed, and with --online each issuer's discovery and keys fetched.
func TestProvidersCheckWorkloadIdentities(t *testing.T) {
	idp, downURL := mustOnlineIssuers(t)
	dir := t.TempDir()
	doc := func(issuer, provider string) string {
		return writeFile(t, dir, "tb.yaml", `providers:
  - id: github
    kind: github
    client_id: Iv1.abc
    client_secret: `+inlineSecret+`
workload_identities:
  - id: ci
    issuer: `+issuer+`
    audience: https://tokenbroker.test
    subject: "repo:acme/*"
    claims: {repository_owner: acme}
    user_claim: actor
    providers: [`+provider+`]
`)
	}
	code, out := runProvidersCheck(t, nil, "--config", doc(idp.URL(), "github"))
	if code != 0 || !strings.Contains(out, "workload identity") || !strings.Contains(out, "the value of claim actor") ||
		!strings.Contains(out, "claim repository_owner") || strings.Contains(out, "  keys") {
		t.Fatalf("offline: exit %d:\n%s", code, out)
	}
	assertNoSecret(t, out)
	code, out = runProvidersCheck(t, nil, "--config", doc(idp.URL(), "github"), "--online")
	if code != 0 || !strings.Contains(out, "ok, 1 from "+idp.Endpoints().JWKS) {
		t.Fatalf("online: exit %d:\n%s", code, out)
	}
	code, out = runProvidersCheck(t, nil, "--config", doc(downURL, "github"), "--online")
	if code != 1 || !strings.Contains(out, "keys") || !strings.Contains(out, "FAILED") {
		t.Fatalf("online, issuer down: exit %d:\n%s", code, out)
	}
	code, out = runProvidersCheck(t, nil, "--config", doc(idp.URL(), "gitlab"))
	if code != 1 || !strings.Contains(out, `workload identity ci: providers: "gitlab": no such provider is configured`) {
		t.Fatalf("unknown provider: exit %d:\n%s", code, out)
	}
	bad := writeFile(t, dir, "bad.yaml", "providers: []\nworkload_identities:\n  - id: x\n    audiences: [a]\n")
	if code, out := runProvidersCheck(t, nil, "--config", bad); code != 1 || !strings.Contains(out, "audiences") {
		t.Fatalf("unknown field: exit %d:\n%s", code, out)
	}
}
