// Package postgres is the [tokenbroker.Store] for more than one replica:
// several stateless tokenbroker processes share one PostgreSQL database
// and coordinate only through it (docs/design.md, Storage). It uses
// jackc/pgx/v5 with a pgxpool.
//
// Every conditional method of the refresh protocol is one statement whose
// WHERE clause is the whole decision, judged on the database clock
// (now()): AcquireLease takes the lease only if the generation matches,
// the link is active and no live lease exists (I1); CommitRefresh,
// MarkReauthRequired and ResealLink compare-and-swap on the generation
// (I3, I4); ReleaseLease clears only its owner's lease. No transaction
// stays open and no connection stays acquired after a method returns (I6).
//
// A Store is also a [tokenbroker.Signaler] across replicas. Each write that
// changes a link (PutLink, DeleteLink, ReleaseLease, CommitRefresh,
// MarkReauthRequired) carries pg_notify('tokenbroker_link', id) in the
// same statement, through a data-modifying CTE, so the notification is
// sent exactly when the write commits and never for a lost CAS. Each
// Store keeps one dedicated listener connection outside the pool
// (application_name tokenbroker-listener), started by the first
// Subscribe, which fans notifications out to the subscribers in the
// process. It reconnects by itself with jittered backoff and, after each
// (re)connection, wakes every subscriber, because signals sent while it
// was away are lost; waiters re-read and keep a poll fallback (I5). The
// writing replica also wakes its own subscribers directly.
//
// Migrations are embedded (migrations/*.sql) and applied with goose by
// [Store.Migrate] under a blocking advisory lock, so replicas starting
// together migrate once. [Open] only checks that the schema is not newer
// than the binary; its errors are one line and never contain the password.
package postgres
