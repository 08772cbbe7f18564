// Package refresh implements the refresh protocol of docs/design.md: it
// hands out a valid access token for a link and, when the token is about to
// expire, makes sure one provider refresh call is made per token generation
// across every replica, and that every caller gets the fresh token.
//
// The package knows the narrow [Store] it needs (the link read and the
// lease protocol's writes, the providers' shared health), the domain's
// [tokenbroker.Signaler] and [tokenbroker.Provider], and a [Clock]; nothing
// of HTTP or SQL. Every blocking point of the protocol goes through one of
// them.
//
// # The protocol
//
// [Coordinator.Token] reads the link. A token valid beyond the refresh-ahead
// window (the provider's, capped at half the token's lifetime) is returned
// with no write and no lock (step 1); a min_valid that no token of the
// provider can satisfy is refused before anything is sent. Otherwise the
// callers of one replica join the link's one flight (step 3), and the flight
// takes the link's lease with one conditional statement judged on the
// database's clock (step 4). The lease is the cross-replica mutual
// exclusion: only its holder calls the provider (I1, I2).
//
// The lease is fenced: taking it yields a [tokenbroker.Lease] whose epoch
// every later write of the holder names, in the same statement, so a holder
// whose lease was taken over changes nothing. The holder renews it while its
// provider call and its commit last; a dead holder's lease is taken over a
// grace after another replica first found it expired, so a live holder cut
// off from the database commits first when the database returns.
//
// A flight that loses the lease waits for the link's "changed" signal
// (LISTEN/NOTIFY for PostgreSQL, an in-process broadcast for SQLite), with a
// poll fallback bounded by the lease's expiry and grace, then reads again;
// callers whose token is still valid do not wait (stale-while-revalidate,
// step 2).
//
// The holder calls the provider on a context detached from every caller (a
// caller that gives up must not abandon a refresh the provider has already
// answered, I2). No database connection is held during that call (I6): the
// lease is a row value, not a transaction. It commits by a compare-and-swap
// on the generation fenced by the lease (step 5, I3), with the change's audit
// events in the same transaction; a commit that fails on a database error is
// retried with the token kept in memory.
//
// # Outcomes
//
// A failed call is rejected, client, not processed or uncertain
// ([tokenbroker.FailureClass]). A rejection makes the holder read the link
// again: a moved generation means another writer refreshed, and its token is
// returned; only an unchanged generation is marked reauth_required, fenced
// by the lease (step 6, I4) - as a lost refresh when the row's attempt
// accounting says an earlier attempt of the generation may have spent the
// token, else as revoked. A client error marks the provider misconfigured,
// never the link. A not processed or uncertain failure releases the lease
// with its outcome: the link backs off on the row for every replica (longer
// after an uncertain one, which may have spent the token), and the failure
// counts against the provider's circuit (step 7). Callers never block on a
// backoff: they get a still-valid token, or 503 with the real Retry-After at
// once. Every waiter ends with the new token or a definite error (I5).
//
// # The two loss windows
//
// If a lease holder dies after the provider answered but before its commit
// (holder_died), or an answer is lost in transit (answer_lost), the rotated
// refresh token is lost, and the next attempt sends a token a strict
// provider rejects (I2's exceptions). The store keeps, on the row, whether
// the generation's token may already be spent, so the rejection is reported
// as a lost refresh with its cause whoever meets it: logged at error,
// counted in [Stats.LostRefreshes] and tokenbroker_refresh_lost_total,
// audited as link.lost_refresh with the link's mark, and named in the link's
// reason.
package refresh
