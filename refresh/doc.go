// Package refresh implements the refresh protocol of DESIGN.md: it hands out
// a valid access token for a link and, when the token is about to expire,
// makes sure exactly one provider refresh call is made per token generation
// across every replica, and that every caller gets the fresh token.
//
// The package knows the domain's [tokenbroker.Store], [tokenbroker.Signaler]
// and [tokenbroker.Provider] and nothing of HTTP or SQL.
//
// # The protocol
//
// [Coordinator.Token] reads the link. A token valid beyond the provider's
// refresh-ahead window is returned with no write and no lock (step 1).
// Otherwise the callers of one replica are coalesced by a singleflight per
// link (step 3), and the one flight that goes on takes the link's lease with
// one conditional statement judged on the database's clock (step 4). The
// lease is the cross-replica mutual exclusion: only its holder calls the
// provider, so a refresh token is sent once (I1, I2).
//
// A flight that loses the lease waits for the link's "changed" signal
// (LISTEN/NOTIFY for PostgreSQL, an in-process broadcast for SQLite), with a
// poll fallback bounded by the lease's expiry, then reads again; while the
// current token is still valid it returns it at once instead of waiting
// (stale-while-revalidate, step 2).
//
// The lease holder calls the provider on a context detached from every
// caller (a caller that gives up must not abandon a refresh the provider
// has already answered, I2) with a timeout well under the lease TTL, so the
// lease cannot expire under a live holder (I1). No database connection is
// held during that call (I6): the lease is a row value, not a transaction.
// It commits by compare-and-swap on the generation (step 5, I3); a commit
// that fails on a transient database error is retried with the token kept
// in memory, never dropped.
//
// A permanent provider answer (invalid_grant, bad_refresh_token) makes the
// holder read the link again: if the generation moved, another writer
// refreshed and its token is returned; only an unchanged generation is
// marked reauth_required, again by compare-and-swap (step 6, I4). A
// transient failure releases the lease and is retried with jittered
// backoff within the caller's deadline; a still-valid token is returned
// meanwhile and an expired one yields [tokenbroker.ProviderUnavailableError]
// (step 7). Every waiter therefore ends with the new token or a definite
// error (I5).
//
// # The window no client can close
//
// If a lease holder dies after the provider answered but before its commit,
// the rotated refresh token is lost with it. The replica that takes over the
// expired lease sends the old refresh token, which a strict provider
// rejects (I2's exception). The coordinator recognises a takeover from the
// lease it found expired on the row, and when the provider then rejects the
// grant it logs the case at error level with its reason, counts it in
// [Stats.LostRefreshes] and the tokenbroker_refresh_lost_total metric,
// audits it as link.lost_refresh and stores the reason on the link.
//
// # Baselines
//
// [NewNaive] and [NewCASOnly] implement the two broken strategies the
// design rejects, behind the same [tokenbroker.TokenService] interface, so
// that `tokenbroker bench herd` can measure them side by side with the
// coordinator. They are for benchmarks only.
package refresh
