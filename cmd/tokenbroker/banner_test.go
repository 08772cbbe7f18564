package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// mustServeUntilStarted runs serve in process on loopback with the data
// directory dir and stops it as soon as it listens; it returns what serve
// wrote to its standard output and standard error.
func mustServeUntilStarted(t *testing.T, dir string, opts appOptions) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := defaultServeConfig()
	cfg.Addr, cfg.DataDir = "127.0.0.1:0", dir
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	opts.onStart = func(context.Context, *app) error { cancel(); return nil }
	var out, errb bytes.Buffer
	if err := serveWith(ctx, cfg, &out, &errb, opts); err != nil {
		t.Fatalf("serve: %v\n%s", err, errb.String())
	}
	return out.String(), errb.String()
}

// TestServeBanner: serve prints the URLs that matter and, on a database
// without an admin key, the exact command that creates one, which works;
// once a key exists the hint is gone.
func TestServeBanner(t *testing.T) {
	dir := t.TempDir()
	serve := func() string {
		t.Helper()
		out, _ := mustServeUntilStarted(t, dir, appOptions{banner: true})
		return out
	}
	out := serve()
	for _, want := range []string{"/admin/", "/api/v1/", "/metrics", "/readyz", "No admin API key exists yet"} {
		if !strings.Contains(out, want) {
			t.Fatalf("banner lacks %q:\n%s", want, out)
		}
	}
	i := strings.Index(out, "tokenbroker apikeys create")
	if i < 0 {
		t.Fatalf("no command in the banner:\n%s", out)
	}
	line := strings.TrimSpace(strings.SplitN(out[i:], "\n", 2)[0])
	args := strings.Fields(line)[1:] // the command as printed, without the binary's name
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "tbk_") {
		t.Fatalf("%s: code %d\n%s%s", line, code, stdout.String(), stderr.String())
	}
	if out := serve(); strings.Contains(out, "No admin API key") {
		t.Fatalf("hint after a key was made:\n%s", out)
	}
}

func TestFirstKeyCommand(t *testing.T) {
	t.Setenv("TOKENBROKER_DATABASE_URL", "")
	for _, tt := range []struct{ url, dir, want string }{
		{"", "/srv/tb data", "tokenbroker apikeys create --name admin --scopes admin --data-dir '/srv/tb data'"},
		{"postgres://tb:hunter2@db/tb?sslmode=disable", "", "tokenbroker apikeys create --name admin --scopes admin --database-url 'postgres://tb:<password>@db/tb?sslmode=disable'"},
		{"host=db user=tb password=hunter2", "", "tokenbroker apikeys create --name admin --scopes admin --database-url 'host=db user=tb password=<password>'"},
	} {
		if got := firstKeyCommand(tt.url, tt.dir); got != tt.want {
			t.Errorf("firstKeyCommand(%q, %q) =\n %s\nwant\n %s", tt.url, tt.dir, got, tt.want)
		}
	}
	t.Setenv("TOKENBROKER_DATABASE_URL", "postgres://tb:hunter2@db/tb")
	if got := firstKeyCommand("postgres://tb:hunter2@db/tb", ""); strings.Contains(got, "hunter2") || !strings.Contains(got, "$TOKENBROKER_DATABASE_URL") {
		t.Errorf("from the environment: %s", got)
	}
}
