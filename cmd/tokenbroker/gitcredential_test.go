package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/httpapi/httpapitest"
	"github.com/tokenbroker/tokenbroker/identity"
	"github.com/tokenbroker/tokenbroker/internal/testenv"
)

const gitHTTPBackend = "/usr/lib/git-core/git-http-backend"

const gitAudience = "https://tokenbroker.test"

// gitEnv is a tokenbroker API whose demo provider serves 127.0.0.1, a CI
// trust entry, and a smart-HTTP git server on loopback that accepts only a
// password the fake identity provider validates as an access token.
type gitEnv struct {
	tb      *httpapitest.Env
	gitURL  string
	dir     string
	exe     string
	accepts atomic.Int64 // requests the git server let through
}

func mustGitEnv(t *testing.T) *gitEnv {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil || !fileExists(gitHTTPBackend) {
		testenv.Missing(t, "git and %s: apt-get install -y git", gitHTTPBackend)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	g := &gitEnv{dir: t.TempDir(), exe: exe}
	g.tb = httpapitest.MustStart(t, httpapitest.Options{
		DemoHosts: `127\.0\.0\.1`,
		Trusts: func(issuer string) []identity.Trust {
			return []identity.Trust{{ID: "ci", Issuer: issuer, Audience: gitAudience, Subject: "repo:acme/*",
				UserClaim: "actor", Providers: []string{httpapitest.ProviderDemo}}}
		},
	})

	// The repository: one commit on main, served from a bare clone.
	root := filepath.Join(g.dir, "srv")
	src := filepath.Join(g.dir, "src")
	mustGit(t, g.dir, nil, "init", "-q", "-b", "main", src)
	if err := os.WriteFile(filepath.Join(src, "README"), []byte("hello from the repo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustGit(t, src, nil, "add", "README")
	mustGit(t, src, nil, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "first")
	mustGit(t, g.dir, nil, "clone", "-q", "--bare", src, filepath.Join(root, "repo.git"))

	backend := &cgi.Handler{Path: gitHTTPBackend, Root: "/", Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	idpUserinfo := g.tb.IDP.Endpoints().Userinfo
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || user != "oauth2" || !validAtIDP(r.Context(), idpUserinfo, pass) {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		g.accepts.Add(1)
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	g.gitURL = srv.URL + "/repo.git"
	return g
}

// validAtIDP asks the fake identity provider whether token is a valid
// access token (the resource server's check).
func validAtIDP(ctx context.Context, userinfo, token string) bool {
	if token == "" {
		return false
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", userinfo, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// gitCmdEnv is a clean environment for git: no user or system config, no
// prompts, no credential from the test's own environment; the test binary
// acts as tokenbroker.
func (g *gitEnv) gitCmdEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GIT_") || strings.HasPrefix(kv, "TOKENBROKER_") || strings.HasPrefix(kv, "ACTIONS_") || strings.HasPrefix(kv, "SSH_ASKPASS") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+g.dir, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0",
		execMainEnv+"=1", "TOKENBROKER_URL="+g.tb.URL)
	return append(env, extra...)
}

func mustGit(t *testing.T, dir string, env []string, args ...string) {
	t.Helper()
	if out, err := runGit(dir, env, args...); err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func runGit(dir string, env []string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = env
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// clone runs git clone with tokenbroker git-credential as the only
// credential helper.
func (g *gitEnv) clone(t *testing.T, dst string, env []string) (string, error) {
	t.Helper()
	return runGit(g.dir, env, "-c", "credential.helper=", "-c", "credential.helper="+g.exe+" git-credential",
		"clone", "-q", g.gitURL, filepath.Join(g.dir, dst))
}

// The real git binary clones over smart HTTP with a token that
// tokenbroker hands out for a workload JWT; with the link broken, git
// fails with its authentication error and tokenbroker's reason.
func TestGitCredentialWorkloadClone(t *testing.T) {
	g := mustGitEnv(t)
	issued := g.tb.MustLink(t, "alice", httpapitest.ProviderDemo, "alice")
	jwtFile := filepath.Join(g.dir, "token")
	writeJWT := func() {
		raw := g.tb.MintWorkloadJWT(t, fakeidp.WorkloadClaims{Subject: "repo:acme/app:ref:refs/heads/main",
			Audience: []string{gitAudience}, Extra: map[string]any{"actor": "alice"}})
		if err := os.WriteFile(jwtFile, []byte(raw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeJWT()
	env := g.gitCmdEnv("TOKENBROKER_IDENTITY_TOKEN_FILE=" + jwtFile)

	// Without the helper, git cannot authenticate: the server's check works.
	if out, err := runGit(g.dir, env, "-c", "credential.helper=", "clone", "-q", g.gitURL, filepath.Join(g.dir, "nohelper")); err == nil {
		t.Fatalf("clone without credentials succeeded:\n%s", out)
	}
	out, err := g.clone(t, "ok", env)
	if err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(g.dir, "ok", "README"))
	if err != nil || string(b) != "hello from the repo\n" {
		t.Fatalf("cloned README %q, %v", b, err)
	}
	if g.accepts.Load() == 0 {
		t.Fatal("the git server let no request through")
	}
	if err := g.tb.Auditor.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	evs, err := g.tb.Store.ListAudit(t.Context(), tokenbroker.AuditFilter{Action: tokenbroker.AuditTokenRead})
	if err != nil || len(evs) == 0 || !strings.HasPrefix(evs[0].Actor, "workload:ci;") || !strings.Contains(evs[0].Detail, "token exchange") {
		t.Fatalf("audit %+v, %v: want token.read by the workload through the exchange", evs, err)
	}

	// Break the link: the provider revokes the grant, the token expires.
	if !g.tb.IDP.RevokeFamilyOf(issued.RefreshToken) {
		t.Fatal("revoke")
	}
	g.tb.Clock.Advance(fakeidp.DefaultAccessTokenTTL + time.Minute)
	writeJWT()
	out, err = g.clone(t, "broken", env)
	if err == nil {
		t.Fatalf("clone with a broken link succeeded:\n%s", out)
	}
	t.Logf("git's output with the link broken:\n%s", out)
	if !strings.Contains(out, "tokenbroker: invalid_grant:") || !strings.Contains(out, "connect again") || !strings.Contains(out, "fatal:") {
		t.Fatalf("git's output lacks its failure or tokenbroker's reason:\n%s", out)
	}
	g.tb.Logs.AssertNoSecrets(t)
}

// With an API key and --user, and as GIT_ASKPASS.
func TestGitCredentialAPIKeyAndAskpass(t *testing.T) {
	g := mustGitEnv(t)
	g.tb.MustLink(t, "alice", httpapitest.ProviderDemo, "alice")
	key := g.tb.MustKey(t, "git", []string{tokenbroker.ScopeTokensRead}, nil, nil)
	env := g.gitCmdEnv("TOKENBROKER_API_KEY="+key, "TOKENBROKER_USER=alice")
	if out, err := g.clone(t, "helper", env); err != nil {
		t.Fatalf("git clone with the helper: %v\n%s", err, out)
	}
	askpass := append(g.gitCmdEnv("TOKENBROKER_API_KEY="+key, "TOKENBROKER_USER=alice"), "GIT_ASKPASS="+g.exe)
	if out, err := runGit(g.dir, askpass, "-c", "credential.helper=", "clone", "-q", g.gitURL, filepath.Join(g.dir, "askpass")); err != nil {
		t.Fatalf("git clone with GIT_ASKPASS: %v\n%s", err, out)
	}
	// A user the key's link does not exist for: git fails, saying why.
	env = g.gitCmdEnv("TOKENBROKER_API_KEY="+key, "TOKENBROKER_USER=bob")
	out, err := g.clone(t, "bob", env)
	if err == nil || !strings.Contains(out, "tokenbroker: not_found:") {
		t.Fatalf("clone for bob: %v\n%s", err, out)
	}
	g.tb.Logs.AssertNoSecrets(t)
}

// The protocol without git: unknown hosts get no answer; store and erase
// do nothing; setup prints the git config line.
func TestGitCredentialProtocol(t *testing.T) {
	env := httpapitest.MustStart(t, httpapitest.Options{DemoHosts: `git\.example\.com`})
	issued := env.MustLink(t, "alice", httpapitest.ProviderDemo, "alice")
	key := env.MustKey(t, "git", []string{tokenbroker.ScopeTokensRead}, nil, nil)
	getenv := func(k string) string {
		return map[string]string{"TOKENBROKER_API_KEY": key}[k]
	}
	f := &gitCredFlags{url: env.URL, user: "alice", minValid: time.Minute}
	call := func(action, in string) (string, string) {
		var out, errOut bytes.Buffer
		if err := runGitCredential(t.Context(), f, action, strings.NewReader(in), &out, &errOut, getenv); err != nil {
			t.Fatalf("%s: %v", action, err)
		}
		return out.String(), errOut.String()
	}
	out, _ := call("get", "protocol=https\nhost=git.example.com\npath=acme/app.git\n\n")
	want := "username=oauth2\npassword=" + issued.AccessToken + "\npassword_expiry_utc="
	if !strings.HasPrefix(out, want) {
		t.Fatalf("get answered %q, want %q...", out, want)
	}
	for _, in := range []string{"protocol=https\nhost=github.com\n", "protocol=ssh\nhost=git.example.com\n", "host=git.example.com\n"} {
		if out, errOut := call("get", in); out != "" || errOut != "" {
			t.Errorf("get %q answered %q %q, want nothing", in, out, errOut)
		}
	}
	for _, a := range []string{"store", "erase"} {
		if out, errOut := call(a, "protocol=https\nhost=git.example.com\nusername=oauth2\npassword=x\n\n"); out != "" || errOut != "" {
			t.Errorf("%s answered %q %q", a, out, errOut)
		}
	}
	if out, _ := call("setup", ""); !strings.HasPrefix(out, "git config --global credential.helper '") || !strings.Contains(out, "git-credential --url "+env.URL+" --user alice'") {
		t.Errorf("setup printed %q", out)
	}
	if got := gitUsername("github"); got != "x-access-token" {
		t.Errorf("github username %q", got)
	}
	// No credential at all: the reason on stderr, nothing on stdout.
	f.user = ""
	var o, e bytes.Buffer
	_ = runGitCredential(t.Context(), f, "get", strings.NewReader("protocol=https\nhost=git.example.com\n"), &o, &e, func(string) string { return "" })
	if o.Len() != 0 || !strings.Contains(e.String(), "no credential") {
		t.Errorf("no credential: out %q err %q", o.String(), e.String())
	}
}

// In GitHub Actions the helper asks the job's OIDC token service for a JWT
// with tokenbroker's audience and exchanges it.
func TestGitCredentialGitHubActions(t *testing.T) {
	env := httpapitest.MustStart(t, httpapitest.Options{
		DemoHosts: `git\.example\.com`,
		Trusts: func(issuer string) []identity.Trust {
			return []identity.Trust{{ID: "actions", Issuer: issuer, Audience: gitAudience, Subject: "repo:acme/*",
				UserClaim: "actor", Providers: []string{httpapitest.ProviderDemo}}}
		},
	})
	issued := env.MustLink(t, "alice", httpapitest.ProviderDemo, "alice")
	const reqToken = "actions-runtime-token"
	var asked atomic.Int64
	tokenService := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "bearer "+reqToken || r.URL.Query().Get("api-version") != "2.0" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		asked.Add(1)
		raw, err := env.IDP.MintWorkloadJWT(fakeidp.WorkloadClaims{Subject: "repo:acme/app:ref:refs/heads/main",
			Audience: []string{r.URL.Query().Get("audience")}, Extra: map[string]any{"actor": "alice"}})
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		env.Logs.AddSecret(raw)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"count":1,"value":"` + raw + `"}`))
	}))
	defer tokenService.Close()
	vars := map[string]string{
		"ACTIONS_ID_TOKEN_REQUEST_URL":   tokenService.URL + "/token?api-version=2.0",
		"ACTIONS_ID_TOKEN_REQUEST_TOKEN": reqToken,
	}
	getenv := func(k string) string { return vars[k] }
	f := &gitCredFlags{url: env.URL, audience: gitAudience}
	var out, errOut bytes.Buffer
	if err := runGitCredential(t.Context(), f, "get", strings.NewReader("protocol=https\nhost=git.example.com\n\n"), &out, &errOut, getenv); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "username=oauth2\npassword="+issued.AccessToken+"\n") || asked.Load() != 1 {
		t.Fatalf("answered %q (stderr %q), token service asked %d times", out.String(), errOut.String(), asked.Load())
	}
	// The audience defaults to --url, which the trust entry does not accept.
	f.audience = ""
	out.Reset()
	errOut.Reset()
	_ = runGitCredential(t.Context(), f, "get", strings.NewReader("protocol=https\nhost=git.example.com\n\n"), &out, &errOut, getenv)
	if out.Len() != 0 || !strings.Contains(errOut.String(), "workload token was refused") {
		t.Fatalf("wrong audience: out %q err %q", out.String(), errOut.String())
	}
	env.Logs.AssertNoSecrets(t)
}
