// Package pgcluster starts throwaway PostgreSQL clusters from the server
// binaries installed on the machine, for tests (through internal/pgtest)
// and for `tokenbroker bench herd` (through internal/bench). It does not
// import package testing, so the binary can link it.
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
// with its parent even when the parent panics, times out or is killed;
// [Cluster.Stop] shuts it down cleanly and removes the directory.
package pgcluster
