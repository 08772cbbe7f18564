// Package pgtest starts throwaway PostgreSQL clusters from the server
// binaries installed on the machine, for tests and benchmarks.
//
// A cluster lives in a fresh temporary directory: initdb with trust
// authentication and no fsync, then a postmaster on a free loopback port
// (and a unix socket in the directory) with fsync, synchronous_commit and
// full_page_writes off. PostgreSQL refuses to run as root, so when the
// caller is root the directory is given to the unprivileged "postgres"
// user and the binaries run with its credentials.
//
// The postmaster is a direct child started with a parent-death signal
// (from an OS thread that stays alive as long as the cluster), so it dies
// with the test binary even when the binary panics, times out or is
// killed; [Cluster.Stop] shuts it down cleanly and removes the directory,
// and SIGINT/SIGTERM stop it too.
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
// pool must be closed first). Where no PostgreSQL binaries exist,
// NewDatabase skips the test with one line saying how to install them,
// unless CI=true or TOKENBROKER_REQUIRE_POSTGRES=1, where it fails.
package pgtest
