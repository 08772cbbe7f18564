// Package storetest is the conformance suite every [tokenbroker.Store]
// must pass: store/sqlite and store/postgres run the same [RunConformance]
// against a real database.
//
// Each subtest opens a fresh, migrated store, so subtests are independent
// and run in parallel. The suite checks the contract written in the doc
// comments of [tokenbroker.Store] rather than any implementation detail,
// and it races real goroutines against the conditional statements of the
// refresh protocol (docs/design.md steps 4–6): 64 goroutines acquire one lease
// and exactly one wins (I1); a commit with a stale generation changes
// nothing (I3); a mark with a stale generation changes nothing (I4); a
// lease past its expiry can be taken over; only the owner releases a
// lease. Times that decide are taken from [tokenbroker.Store.Now], the
// database clock, and expired leases are made with a negative TTL, so no
// test sleeps.
//
// If the store also implements [tokenbroker.Signaler] the suite checks
// that the writes wake the link's subscribers.
package storetest
