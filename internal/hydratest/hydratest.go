// Package hydratest runs Ory Hydra, an OAuth2 and OpenID Connect server
// that nobody here wrote, for interoperability tests: in memory mode,
// refresh tokens rotating on every use with reuse detection (a used refresh
// token presented again revokes its grant), a minimal login and consent
// app served by the test process, and a counting proxy in front of Hydra's
// public endpoints.
//
// Hydra is built from the small module in internal/interop/hydra, which
// pins github.com/ory/hydra/v2 as a tool so that the product's go.mod
// stays clean. The first build takes minutes and lands in the Go build
// cache (go run caches the linked executable); later test runs reuse it.
// Where it cannot be built (no module proxy, no C compiler for SQLite),
// tests skip with one line, or fail when CI=true.
package hydratest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Hydra's version, as pinned by internal/interop/hydra/go.mod.
const Version = "v2.3.0"

// buildTags select Hydra's SQLite driver, which its memory mode needs.
const buildTags = "sqlite,sqlite_omit_load_extension"

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildTime time.Duration
)

// Binary returns the path of the Hydra executable, building it on first
// use in this process. It skips tb (fails it under CI=true) when Hydra
// cannot be built.
func Binary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		start := time.Now()
		binPath, buildErr = build()
		buildTime = time.Since(start)
	})
	if buildErr != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("hydratest: CI=true but Ory Hydra cannot be built: %v", buildErr)
		}
		tb.Skipf("hydratest: cannot build Ory Hydra %s (needs the Go module proxy and gcc): %s", Version, firstLine(buildErr.Error()))
	}
	return binPath
}

// BuildTime is how long [Binary] took to find or build Hydra in this
// process (zero before the first call).
func BuildTime() time.Duration { return buildTime }

// build asks go run for Hydra's cached executable: -exec echo prints the
// path instead of running it. A first build links into a temporary
// directory that go run removes (and caches the result), so the path is
// asked for again until it is the cached one.
func build() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("no source path")
	}
	dir := filepath.Join(filepath.Dir(file), "..", "interop", "hydra")
	for range 2 {
		cmd := exec.Command("go", "run", "-tags", buildTags, "-exec", "echo", "github.com/ory/hydra/v2")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			if msg := strings.TrimSpace(stderr.String()); msg != "" {
				return "", fmt.Errorf("go run: %v: %s", err, msg)
			}
			return "", fmt.Errorf("go run: %v", err)
		}
		p := strings.TrimSpace(string(out))
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("go run -exec echo printed no executable that exists")
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// Options configure a [Server].
type Options struct {
	// AccessTokenTTL is the lifetime of access tokens (ttl.access_token);
	// default one hour.
	AccessTokenTTL time.Duration
	// AutoLogin, when set, makes the login app sign in as this subject at
	// once; otherwise it shows a form (a text field "subject" and a
	// "Sign in" button, id "signin").
	AutoLogin string
}

// Server is a running Hydra with its login and consent app and its
// counting proxy.
type Server struct {
	// URL is the public URL clients use (the proxy); it is Hydra's issuer.
	URL string
	// AdminURL is Hydra's admin API.
	AdminURL string

	proxy *counter
	cmd   *exec.Cmd
	done  chan struct{}
	logMu sync.Mutex
	logs  bytes.Buffer
}

// Start starts Hydra; it is stopped at tb's cleanup.
func Start(tb testing.TB, o Options) *Server {
	tb.Helper()
	exe := Binary(tb)
	if o.AccessTokenTTL == 0 {
		o.AccessTokenTTL = time.Hour
	}
	s := &Server{done: make(chan struct{})}

	publicPort, adminPort := freePort(tb), freePort(tb)
	hydraPublic := &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", publicPort)}
	s.AdminURL = "http://" + net.JoinHostPort("127.0.0.1", adminPort)

	s.proxy = newCounter(hydraPublic)
	proxy := httptest.NewServer(s.proxy)
	tb.Cleanup(proxy.Close)
	s.URL = proxy.URL

	app := httptest.NewServer(&loginApp{admin: s.AdminURL, autoLogin: o.AutoLogin})
	tb.Cleanup(app.Close)

	dir := tb.TempDir()
	config := fmt.Sprintf(`dsn: memory
serve:
  public: {host: 127.0.0.1, port: %s}
  admin: {host: 127.0.0.1, port: %s}
urls:
  self: {issuer: %q, public: %q}
  login: %q
  consent: %q
secrets:
  system: ["hydratest-system-secret-not-for-production"]
ttl:
  access_token: %s
oauth2:
  grant:
    refresh_token:
      rotation_grace_period: 0s
log: {level: warn, leak_sensitive_values: false}
`, publicPort, adminPort, s.URL, s.URL, app.URL+"/login", app.URL+"/consent", o.AccessTokenTTL)
	cfgPath := filepath.Join(dir, "hydra.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		tb.Fatal(err)
	}
	s.cmd = exec.Command(exe, "serve", "all", "--dev", "--sqa-opt-out", "--config", cfgPath)
	s.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	s.cmd.Stdout = &lockedWriter{mu: &s.logMu, w: &s.logs}
	s.cmd.Stderr = s.cmd.Stdout
	// Hydra dies with the test process, so nothing outlives a killed run.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		tb.Fatalf("hydratest: start hydra: %v", err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	tb.Cleanup(s.stop)
	s.waitReady(tb)
	return s
}

// stop ends Hydra (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (s *Server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// waitReady waits until Hydra's admin API reports ready. Hydra offers no
// readiness signal but its health endpoint, so it is asked every 50 ms;
// the process' exit ends the wait at once.
func (s *Server) waitReady(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(s.AdminURL + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-s.done:
			tb.Fatalf("hydratest: hydra exited before it was ready:\n%s", s.Logs())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("hydratest: hydra not ready after 60 s:\n%s", s.Logs())
		}
	}
}

// Logs returns what Hydra printed.
func (s *Server) Logs() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.logs.String()
}

// Endpoints of the public API, through the proxy.
func (s *Server) AuthURL() string      { return s.URL + "/oauth2/auth" }
func (s *Server) TokenURL() string     { return s.URL + "/oauth2/token" }
func (s *Server) RevokeURL() string    { return s.URL + "/oauth2/revoke" }
func (s *Server) UserinfoURL() string  { return s.URL + "/userinfo" }
func (s *Server) DiscoveryURL() string { return s.URL + "/.well-known/openid-configuration" }
func (s *Server) Stats() Stats         { return s.proxy.stats() }
func (s *Server) Requests() []Request  { return s.proxy.requests() }
func (s *Server) ResetStats()          { s.proxy.reset() }

// Client is an OAuth2 client registered with Hydra.
type Client struct {
	ID           string   `json:"client_id"`
	Secret       string   `json:"client_secret,omitempty"`
	RedirectURIs []string `json:"redirect_uris"`
	// Scope is space-separated; default "openid offline_access offline read".
	Scope      string   `json:"scope"`
	GrantTypes []string `json:"grant_types"`
	// AuthMethod is token_endpoint_auth_method; default
	// client_secret_basic.
	AuthMethod    string   `json:"token_endpoint_auth_method"`
	ResponseTypes []string `json:"response_types"`
}

// CreateClient registers c through the admin API.
func (s *Server) CreateClient(tb testing.TB, c Client) Client {
	tb.Helper()
	if c.Scope == "" {
		c.Scope = "openid offline_access offline read"
	}
	if c.AuthMethod == "" {
		c.AuthMethod = "client_secret_basic"
	}
	c.GrantTypes = []string{"authorization_code", "refresh_token"}
	c.ResponseTypes = []string{"code"}
	var out Client
	s.admin(tb, http.MethodPost, "/admin/clients", c, &out, http.StatusCreated)
	if out.ID == "" {
		tb.Fatalf("hydratest: created client has no id")
	}
	if out.Secret == "" {
		out.Secret = c.Secret
	}
	return out
}

// Introspection is the part of an RFC 7662 answer the tests read.
type Introspection struct {
	Active    bool   `json:"active"`
	TokenUse  string `json:"token_use"` // access_token or refresh_token
	Subject   string `json:"sub"`
	ClientID  string `json:"client_id"`
	ExpiresAt int64  `json:"exp"`
}

// Introspect asks Hydra's admin API whether token is active (RFC 7662).
func (s *Server) Introspect(tb testing.TB, token string) Introspection {
	tb.Helper()
	resp, err := http.PostForm(s.AdminURL+"/admin/oauth2/introspect", url.Values{"token": {token}})
	if err != nil {
		tb.Fatalf("hydratest: introspect: %v", err)
	}
	defer resp.Body.Close()
	var in Introspection
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&in) != nil {
		tb.Fatalf("hydratest: introspect: HTTP %d", resp.StatusCode)
	}
	return in
}

// admin sends a JSON request to the admin API and decodes the answer.
func (s *Server) admin(tb testing.TB, method, path string, in, out any, want int) {
	tb.Helper()
	if err := adminCall(context.Background(), method, s.AdminURL+path, in, out, want); err != nil {
		tb.Fatalf("hydratest: %v", err)
	}
}

func adminCall(ctx context.Context, method, target string, in, out any, want int) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, target, resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func freePort(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// SetAccessTokenLifespan sets the lifetime of the access tokens issued to
// clientID, by the code grant and by refreshes.
func (s *Server) SetAccessTokenLifespan(tb testing.TB, clientID string, d time.Duration) {
	tb.Helper()
	s.admin(tb, http.MethodPut, "/admin/clients/"+url.PathEscape(clientID)+"/lifespans", map[string]string{
		"authorization_code_grant_access_token_lifespan": d.String(),
		"refresh_token_grant_access_token_lifespan":      d.String(),
	}, nil, http.StatusOK)
}
