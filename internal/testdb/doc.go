// Package testdb gives tests real, migrated, empty stores: a SQLite file in
// the test's temporary directory, or a fresh database in the test binary's
// throwaway PostgreSQL cluster (internal/pgtest). Both are closed when the
// test ends.
//
// A package that uses [Postgres] needs pgtest's TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
package testdb
