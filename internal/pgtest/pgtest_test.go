package pgtest_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/tokenbroker/tokenbroker/internal/pgcluster"
	"github.com/tokenbroker/tokenbroker/internal/pgtest"
)

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, func() error { return goleak.Find() }))
}

func TestNewDatabase(t *testing.T) {
	ctx := context.Background()
	a, b := pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	if a == b {
		t.Fatalf("two NewDatabase calls gave one URL %s", a)
	}
	for _, url := range []string{a, b} {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("fresh database has %d tables, %v", n, err)
		}
		if _, err := conn.Exec(ctx, `CREATE TABLE t (x int)`); err != nil {
			t.Fatal(err)
		}
		var fsync string
		if err := conn.QueryRow(ctx, `SHOW fsync`).Scan(&fsync); err != nil || fsync != "off" {
			t.Fatalf("fsync = %q, %v", fsync, err)
		}
		conn.Close(ctx)
	}
}

func TestStartClusterStop(t *testing.T) {
	pgtest.RequireBinaries(t)
	ctx := context.Background()
	c, err := pgcluster.StartCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	url, err := c.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Dir()); !os.IsNotExist(err) {
		t.Fatalf("cluster directory left behind: %v", err)
	}
	if _, err := pgx.Connect(ctx, url); err == nil {
		t.Fatal("cluster still accepts connections after Stop")
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

// TestMissingBinaries runs this test binary again without PostgreSQL
// binaries: NewDatabase skips with one line naming the install command,
// and fails instead when PostgreSQL is required.
func TestMissingBinaries(t *testing.T) {
	if os.Getenv(pgtest.BinEnv) != "" {
		t.Skip("already the child")
	}
	for _, tc := range []struct {
		env      []string
		wantFail bool
	}{
		{[]string{"CI=", "TOKENBROKER_REQUIRE_POSTGRES="}, false},
		{[]string{"CI=true"}, true},
		{[]string{"CI=", "TOKENBROKER_REQUIRE_POSTGRES=1"}, true},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestNewDatabase$", "-test.v", "-test.count=1")
		cmd.Env = append(append(os.Environ(), pgtest.BinEnv+"="+t.TempDir()), tc.env...)
		out, err := cmd.CombinedOutput()
		failed := err != nil
		if failed != tc.wantFail {
			t.Fatalf("%v: failed = %v, want %v:\n%s", tc.env, failed, tc.wantFail, out)
		}
		if !strings.Contains(string(out), "apt-get install -y postgresql") {
			t.Fatalf("%v: output lacks the install hint:\n%s", tc.env, out)
		}
		if !tc.wantFail && !strings.Contains(string(out), "--- SKIP: TestNewDatabase") {
			t.Fatalf("%v: test not skipped:\n%s", tc.env, out)
		}
	}
}
