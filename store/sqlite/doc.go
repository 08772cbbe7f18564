// Package sqlite is the embedded default [tokenbroker.Store]: one file, one
// replica, no server. It uses modernc.org/sqlite, a pure-Go SQLite, so the
// binary needs no C toolchain.
//
// The database runs in WAL mode, so readers never block the writer nor the
// writer the readers. Every write of a Store goes through a single
// connection (a database/sql pool of one): SQLite allows one writer at a
// time anyway, and queueing writers in Go instead of in SQLite's lock means
// no caller ever sees SQLITE_BUSY however many goroutines race. Reads use a
// separate pool of query-only connections. busy_timeout covers the writers
// of other processes on the same file (tokenbroker migrate, a second
// Store), and foreign keys are on. Transactions begin IMMEDIATE.
//
// Times are INTEGER unix milliseconds. Every condition that decides a lease
// or the expiry of a session compares with the database clock inside the
// statement (CAST(unixepoch('subsec') * 1000 AS INTEGER)), never with the
// caller's clock. The conditional methods of the refresh protocol
// (AcquireLease, CommitRefresh, MarkReauthRequired, ReleaseLease,
// ResealLink) are each one UPDATE whose WHERE clause is the whole decision.
//
// A Store is also the process's [tokenbroker.Signaler]: successful writes
// that change a link wake its subscribers through an in-process broadcast,
// which is all one replica needs.
//
// Migrations are embedded (migrations/*.sql) and applied with goose by
// [Store.Migrate]; [Open] only checks that the database is not newer than
// the binary.
package sqlite
