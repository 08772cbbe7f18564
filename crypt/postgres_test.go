package crypt_test

import (
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/pgtest"
	"github.com/tokenbroker/tokenbroker/internal/testdb"
)

// pgURLs maps the PostgreSQL stores of the tests to their URLs, for pg_dump.
var pgURLs sync.Map

// The decorator's tests run against PostgreSQL too: rotation and rekey,
// rekey concurrent with refreshes, and the pg_dump search.
func init() {
	backends = append(backends, backend{
		name: "postgres",
		open: func(tb testing.TB) tokenbroker.Store {
			url := pgtest.NewDatabase(tb)
			s := testdb.PostgresAt(tb, url)
			pgURLs.Store(tokenbroker.Store(s), url)
			return s
		},
		dump: dumpPostgres,
	})
}

func dumpPostgres(tb testing.TB, s tokenbroker.Store) string {
	tb.Helper()
	url, ok := pgURLs.Load(s)
	if !ok {
		tb.Fatalf("no URL recorded for store %T", s)
	}
	bin := "pg_dump"
	if dir, err := pgtest.FindBinaries(); err == nil {
		if _, err := exec.LookPath(filepath.Join(dir, "pg_dump")); err == nil {
			bin = filepath.Join(dir, "pg_dump")
		}
	}
	out, err := exec.Command(bin, "--dbname="+url.(string)).Output()
	if err != nil {
		tb.Fatalf("pg_dump: %v", err)
	}
	return string(out)
}
