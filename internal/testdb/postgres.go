package testdb

import (
	"context"
	"testing"

	"github.com/tokenbroker/tokenbroker/internal/pgtest"
	"github.com/tokenbroker/tokenbroker/store/postgres"
)

// Postgres returns a migrated PostgreSQL store on a fresh database of the
// test binary's throwaway cluster, closed at cleanup (before the database
// is dropped). It skips the test where PostgreSQL is not installed (see
// pgtest.NewDatabase). The package's TestMain must be pgtest.Main.
func Postgres(tb testing.TB) *postgres.Store {
	tb.Helper()
	return PostgresAt(tb, pgtest.NewDatabase(tb))
}

// PostgresAt returns a migrated store on the database at url, closed at
// cleanup. Two stores on one URL behave like two replicas.
func PostgresAt(tb testing.TB, url string) *postgres.Store {
	tb.Helper()
	ctx := context.Background()
	s, err := postgres.Open(ctx, url)
	if err != nil {
		tb.Fatalf("testdb: open PostgreSQL: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		tb.Fatalf("testdb: migrate PostgreSQL: %v", err)
	}
	return s
}
