// Package pgtest gives tests throwaway PostgreSQL databases: the testing
// wrapper around internal/pgcluster (which starts the clusters and is free
// of package testing).
//
// Tests share one cluster per test binary, started lazily by the first
// [NewDatabase], and each test gets its own fresh database:
//
//	func TestMain(m *testing.M) {
//		os.Exit(pgtest.Main(m, func() error { return goleak.Find() }))
//	}
//
//	func TestX(t *testing.T) {
//		url := pgtest.NewDatabase(t) // skips if PostgreSQL is not installed
//		...
//	}
//
// [Main] stops the cluster after the tests and then runs its after
// functions (a goroutine-leak check belongs there: the cluster's admin
// pool must be closed first). SIGINT/SIGTERM stop the shared cluster too.
// Where no PostgreSQL binaries exist, NewDatabase skips the test with one
// line saying how to install them, unless CI=true or
// TOKENBROKER_REQUIRE_POSTGRES=1, where it fails.
package pgtest
