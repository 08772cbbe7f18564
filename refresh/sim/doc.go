// Package sim is a deterministic simulation of the refresh protocol of
// docs/design.md, in the style of FoundationDB's simulation testing.
//
// Several replicas run the production coordinator ([refresh.Coordinator])
// through its narrow interfaces: refresh.Store, refresh.Clock,
// tokenbroker.Signaler and tokenbroker.Provider. Behind them sit one
// simulated database ([DB]: the conditional statements of store/sqlite and
// store/postgres, judged on the simulated clock; TestDBConformance runs the
// store conformance suite's protocol part against it) and one simulated
// strict provider (single-use refresh tokens that rotate on every refresh;
// a spent token sent again revokes the whole grant).
//
// # The scheduler
//
// [Run] is called inside a testing/synctest bubble. Every blocking point of
// a coordinator is an operation of the simulation: a database statement, a
// provider request, a wait on the clock (After, and the timeouts of
// Clock.WithTimeout), a signal. The goroutine that reaches one registers it
// and blocks; when synctest.Wait says that every goroutine of the bubble is
// blocked, the scheduler draws, with its seeded random source, one event
// among those due - ordered by keys built from the replica, the caller's
// call and the operation, never from Go's scheduling - runs it (applies the
// statement, lets the provider process the request, delivers an answer,
// fires a timer, delivers a NOTIFY, injects a fault), and waits again. With
// nothing due, it moves the clock to the next event. Goroutines that one
// event wakes together only touch state whose result does not depend on
// their order (jitter draws are a function of the step, not of the order
// of the draws). A seed therefore replays exactly
// (TestSimulationReplaysExactly), and a failing one prints its schedule.
//
// # The world a seed draws
//
// Two to four replicas, one to three links, callers on every replica with
// deadlines and min_valid values, tokens living 45 s to 5 min, the
// coordinators' production defaults; and, by profile (calm, flaky, stormy,
// outages): statements delayed, failed before or after they apply, hung;
// provider requests refused, answered 503 with Retry-After, 5xx before or
// after processing, slow (up to beyond the provider timeout), their answer
// lost (a reset after the request was written) or never coming; NOTIFYs
// delayed and dropped, listeners reconnecting (waking every subscriber);
// replicas crashed at any step (with a statement in flight, with the
// provider's answer on its way) and restarted under the same or a new
// lease owner, paused (past their lease, with an answer on its way) or cut
// off from the database (also for longer than their lease while their
// request is on its way to a slow provider); database outages (refusing,
// or halted: statements hang and apply when it resumes); provider
// outages; a provider refusing the client; users reconnecting or revoking
// their grant at the provider.
// After the faults heal, every link is asked for a token again.
//
// # The invariants
//
// After every step the ledger (check.go) judges against the ground truth
// of the database and the provider: I1, only the lease holder sends, and a
// lease is taken over only from a holder that stopped renewing it (dead,
// paused, or failed by the database); I2, a refresh token the provider
// rotated is sent again only in the two loss windows (its answer was lost,
// or its holder died, was paused or cut off before committing it), re-sent
// after an uncertain outcome only after the link's backoff, and every loss
// ends in a lost_refresh mark naming a cause that really happened, audited
// with the mark and counted; I3, a commit writes only a token refreshed from
// the row's current refresh token and never revives a marked link; I4, no
// link is marked while the provider still honours its refresh token; I5,
// every caller ends within its deadline (plus any pause of its replica)
// with a token that was the link's during the call and lasts its min_valid,
// or a typed error the link's history justifies; I6, a flight holds no
// statement open while it calls the provider. At the end every link is
// active with a token the provider honours, or marked for a reason that
// happened.
//
// # What the model assumes
//
// A request the provider has not processed when its client gives up (its
// timeout) or dies is processed within a second of that, or never. A
// paused process's statements already sent are applied on time; it
// receives their answers, its timers and its signals when it wakes.
// Coordinators' clocks agree with the database's.
package sim
