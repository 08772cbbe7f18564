package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/internal/pgtest"
	"github.com/tokenbroker/tokenbroker/store/postgres"
	"github.com/tokenbroker/tokenbroker/store/sqlite"
)

// runMigrate runs `tokenbroker migrate args...` and returns the exit code,
// stdout and stderr.
func runMigrate(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), append([]string{"migrate"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// wantOneLineFailure checks a failure is one line on stderr without a
// stack trace or secret.
func wantOneLineFailure(t *testing.T, code int, stdout, stderr string, secrets ...string) {
	t.Helper()
	if code == 0 {
		t.Fatalf("exit code 0, want a failure; stdout %q", stdout)
	}
	if lines := strings.Count(strings.TrimRight(stderr, "\n"), "\n") + 1; stderr == "" || lines != 1 {
		t.Fatalf("stderr has %d lines, want one: %q", lines, stderr)
	}
	for _, bad := range append([]string{"goroutine ", "panic", ".go:"}, secrets...) {
		if strings.Contains(stderr, bad) {
			t.Fatalf("stderr contains %q: %q", bad, stderr)
		}
	}
}

func TestMigrateSQLite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	code, out, errOut := runMigrate(t, "--data-dir", dir, "--database-url", "")
	if code != 0 {
		t.Fatalf("migrate: exit %d: %s", code, errOut)
	}
	latest := sqlite.LatestVersion()
	want := fmt.Sprintf("migrated from schema version 0 to %d", latest)
	if !strings.Contains(out, want) || !strings.Contains(out, filepath.Join(dir, "tokenbroker.db")) {
		t.Fatalf("stdout = %q, want %q and the file", out, want)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data dir: %v, %v; want mode 0700", fi, err)
	}

	code, out, errOut = runMigrate(t, "--data-dir", dir, "--database-url", "", "--status")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("schema version %d, latest %d (up to date)", latest, latest)) {
		t.Fatalf("migrate --status = %d %q %q", code, out, errOut)
	}
	code, out, _ = runMigrate(t, "--data-dir", dir, "--database-url", "")
	if code != 0 || !strings.Contains(out, "already up to date") {
		t.Fatalf("second migrate = %d %q", code, out)
	}
}

func TestMigrateSQLiteURL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "x.db")
	for _, u := range []string{"sqlite://" + path, "file:" + path} {
		code, out, errOut := runMigrate(t, "--database-url", u, "--status")
		if code != 0 || !strings.Contains(out, path) {
			t.Fatalf("migrate --status --database-url %s = %d %q %q", u, code, out, errOut)
		}
	}
}

func TestMigrateStatusPending(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runMigrate(t, "--data-dir", dir, "--database-url", "", "--status")
	if code != 0 || !strings.Contains(out, "schema version 0,") || !strings.Contains(out, "pending") {
		t.Fatalf("migrate --status = %d %q %q", code, out, errOut)
	}
}

func TestMigrateBadURL(t *testing.T) {
	for _, u := range []string{
		"mysql://root:hunter2@db/tokenbroker",
		"postgres://root:hunter2@[::1/tokenbroker",
		"host=db password=hunter2:x",
		"hunter2",
		"sqlite://remotehost/x.db",
	} {
		t.Run(u, func(t *testing.T) {
			code, out, errOut := runMigrate(t, "--database-url", u)
			wantOneLineFailure(t, code, out, errOut, "hunter2")
			t.Log(strings.TrimSpace(errOut))
		})
	}
}

func TestMigrateUnreachablePostgres(t *testing.T) {
	// A port nothing listens on: take a free one and leave it closed.
	port := closedLoopbackPort(t)
	u := fmt.Sprintf("postgres://tb:hunter2@127.0.0.1:%d/tokenbroker?sslmode=disable&connect_timeout=5", port)
	code, out, errOut := runMigrate(t, "--database-url", u)
	wantOneLineFailure(t, code, out, errOut, "hunter2")
	if !strings.Contains(errOut, "cannot connect") {
		t.Fatalf("stderr = %q, want it to say it cannot connect", errOut)
	}
}

func TestMigratePostgres(t *testing.T) {
	u := pgtest.NewDatabase(t)
	code, out, errOut := runMigrate(t, "--database-url", u)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("migrated from schema version 0 to %d", postgres.LatestVersion())) {
		t.Fatalf("migrate = %d %q %q", code, out, errOut)
	}
	t.Setenv("TOKENBROKER_DATABASE_URL", u) // read when the flags are built
	code, out, errOut = runMigrate(t, "--status")
	if code != 0 || !strings.Contains(out, "up to date") || !strings.Contains(out, "PostgreSQL") {
		t.Fatalf("migrate --status (env) = %d %q %q", code, out, errOut)
	}
}

func TestMigrateSchemaNewerThanBinary(t *testing.T) {
	dir := t.TempDir()
	if code, _, errOut := runMigrate(t, "--data-dir", dir, "--database-url", ""); code != 0 {
		t.Fatalf("migrate: %s", errOut)
	}
	future := sqlite.LatestVersion() + 1
	db, err := sql.Open("sqlite", filepath.Join(dir, "tokenbroker.db"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`INSERT INTO `+sqlite.VersionTable+` (version_id, is_applied) VALUES (?, 1)`, future)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{}, {"--status"}} {
		code, out, errOut := runMigrate(t, append([]string{"--data-dir", dir, "--database-url", ""}, args...)...)
		wantOneLineFailure(t, code, out, errOut)
		want := fmt.Sprintf("database schema version %d is newer than this binary supports (%d); upgrade tokenbroker", future, sqlite.LatestVersion())
		if !strings.Contains(errOut, want) {
			t.Fatalf("stderr = %q, want %q", errOut, want)
		}
	}
}

// closedLoopbackPort returns a loopback port that was free a moment ago.
func closedLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
