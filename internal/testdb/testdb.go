package testdb

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tokenbroker/tokenbroker/store/sqlite"
)

// SQLite returns a migrated SQLite store in a file under tb.TempDir(),
// closed at cleanup.
func SQLite(tb testing.TB) *sqlite.Store {
	tb.Helper()
	return SQLiteAt(tb, filepath.Join(tb.TempDir(), "tokenbroker.db"))
}

// SQLiteAt returns a migrated SQLite store at path, closed at cleanup.
// Two stores at one path share the database, like two processes would.
func SQLiteAt(tb testing.TB, path string) *sqlite.Store {
	tb.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		tb.Fatalf("testdb: open SQLite: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		tb.Fatalf("testdb: migrate SQLite: %v", err)
	}
	return s
}
