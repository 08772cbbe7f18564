package testdb

import (
	"context"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/internal/pgtest"
	"github.com/tokenbroker/tokenbroker/store/postgres"
)

// PostgresReplicas returns n PostgreSQL stores on one fresh, migrated
// database, each with its own pool and listener connection, as n replicas
// would have. query, if not empty, is appended to the URL (for example
// "pool_max_conns=1"). The stores are closed at cleanup.
func PostgresReplicas(tb testing.TB, n int, query string) []*postgres.Store {
	tb.Helper()
	url := pgtest.NewDatabase(tb)
	if query != "" {
		sep := "?"
		if strings.Contains(url, "?") {
			sep = "&"
		}
		url += sep + query
	}
	ctx := context.Background()
	stores := make([]*postgres.Store, n)
	for i := range stores {
		s, err := postgres.Open(ctx, url)
		if err != nil {
			tb.Fatalf("testdb: open PostgreSQL: %v", err)
		}
		tb.Cleanup(func() { s.Close() })
		if i == 0 {
			if err := s.Migrate(ctx); err != nil {
				tb.Fatalf("testdb: migrate PostgreSQL: %v", err)
			}
		}
		stores[i] = s
	}
	return stores
}
