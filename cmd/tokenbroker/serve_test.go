package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/pgtest"
)

// serveOnce runs `tokenbroker serve` in process with a context that ends
// soon, for start-up failures that must exit at once.
func serveOnce(t *testing.T, args ...string) (code int, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code = run(ctx, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...), &out, &errb)
	return code, errb.String()
}

// lastLine is the one-line failure `run` prints last.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestServeRefusesWithoutKeyOnPostgres: replicas must share a ring, so
// PostgreSQL without a key refuses to start with one clear line.
func TestServeRefusesWithoutKeyOnPostgres(t *testing.T) {
	pgtest.RequireBinaries(t)
	t.Setenv("TOKENBROKER_ENCRYPTION_KEYS", "")
	code, stderr := serveOnce(t, "--database-url", pgtest.NewDatabase(t))
	if code == 0 || !strings.Contains(lastLine(stderr), "no encryption key") || strings.Contains(stderr, "goroutine") {
		t.Fatalf("code %d, stderr:\n%s", code, stderr)
	}
}

// TestServeRefusesWrongRing: a database with rows sealed by another key
// refuses to start, naming the key ids, never key material.
func TestServeRefusesWrongRing(t *testing.T) {
	dir := t.TempDir()
	k1, r1, k2 := mustSealWithOtherKey(t, dir)
	t.Setenv("TOKENBROKER_ENCRYPTION_KEYS", k2)
	code, stderr := serveOnce(t, "--data-dir", dir)
	if code == 0 || !strings.Contains(lastLine(stderr), r1.PrimaryID()) || strings.Contains(stderr, k1) || strings.Contains(stderr, k2) {
		t.Fatalf("code %d, stderr:\n%s", code, stderr)
	}
	// The embedded default without a key file: a fresh dev key cannot open
	// the rows either, and says so instead of serving broken links.
	t.Setenv("TOKENBROKER_ENCRYPTION_KEYS", "")
	code, stderr = serveOnce(t, "--data-dir", dir)
	if code == 0 || !strings.Contains(lastLine(stderr), r1.PrimaryID()) {
		t.Fatalf("dev key: code %d, stderr:\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, devKeyFile)); err == nil {
		t.Fatal("a useless dev key was generated over rows sealed by another key")
	}
	// On an empty database the dev key is generated, 0600.
	fresh := t.TempDir()
	// serve starts, generates the key, and stops once it listens.
	_, errb := mustServeUntilStarted(t, fresh, appOptions{})
	if fi, err := os.Stat(filepath.Join(fresh, devKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("dev key file: %v %v", fi, err)
	}
	if !strings.Contains(errb, "generated a new encryption key") {
		t.Fatalf("serve did not say it generated a key:\n%s", errb)
	}
}

// TestServeBadDatabaseURL: one line, non-zero, no stack trace, no password.
func TestServeBadDatabaseURL(t *testing.T) {
	for _, url := range []string{"mysql://u:hunter2@db/x", "postgres://u:hunter2@127.0.0.1:1/x?connect_timeout=2"} {
		code, stderr := serveOnce(t, "--database-url", url)
		if code == 0 || strings.Contains(stderr, "hunter2") || strings.Contains(stderr, "goroutine") ||
			strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Fatalf("%s: code %d, stderr:\n%s", url, code, stderr)
		}
	}
}

func TestServeConfigValidate(t *testing.T) {
	for _, args := range [][]string{
		{"--lease-ttl", "500ms"},
		{"--provider-timeout", "0s"},
		{"--lease-grace", "100ms"},
		{"--lease-ttl", "2s", "--lease-grace", "3s"},
		{"--log-format", "xml"},
		{"--base-url", "ftp://x"},
		{"--return-url-allow", "not a url"},
		{"--token-cache-ttl", "1h"},
		{"--audit-retention", "10m"},
	} {
		code, stderr := serveOnce(t, args...)
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Fatalf("%v: code %d, stderr:\n%s", args, code, stderr)
		}
	}
}

// TestServeEnvValueThatDoesNotParse: an environment value that does not
// parse stops serve with one line naming the variable, instead of
// silently becoming the default.
func TestServeEnvValueThatDoesNotParse(t *testing.T) {
	for _, tc := range []struct{ key, value string }{
		{"TOKENBROKER_LEASE_TTL", "30"},
		{"TOKENBROKER_PROVIDER_TIMEOUT", "ten seconds"},
		{"TOKENBROKER_TOKEN_CACHE_TTL", "1"},
		{"TOKENBROKER_AUDIT_RETENTION", "90d"},
		{"TOKENBROKER_LOG_REQUESTS", "yes please"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			t.Setenv(tc.key, tc.value)
			code, stderr := serveOnce(t, "--data-dir", t.TempDir())
			if code != 2 || !strings.Contains(stderr, tc.key) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Fatalf("code %d, stderr:\n%s", code, stderr)
			}
		})
	}
}

// TestMetricsNoSniff: /metrics sends X-Content-Type-Options: nosniff like
// every other answer of serve.
func TestMetricsNoSniff(t *testing.T) {
	cfg := defaultServeConfig()
	cfg.Addr, cfg.DataDir, cfg.BaseURL = "127.0.0.1:0", t.TempDir(), "http://127.0.0.1:1"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := buildApp(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), appOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rec := httptest.NewRecorder()
	a.handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("/metrics: %d, X-Content-Type-Options %q", rec.Code, rec.Header().Get("X-Content-Type-Options"))
	}
}
