package storetest

import (
	"testing"
	"time"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

// RunProtocolConformance runs the part of the suite that states the
// refresh protocol's statements: links, leases, commits, marks and the
// providers' health (docs/design.md steps 4-7). It is for stores that
// implement only those, like the simulated database of refresh/sim, which
// must behave exactly as the real ones: open's store needs GetLink,
// PutLink, the lease and health methods, Now and ListAudit (by action).
func RunProtocolConformance(t *testing.T, open func(t *testing.T) tokenbroker.Store) {
	t.Helper()
	runTests(t, protocolTests, open)
}

// protocolTests are the tests of the refresh protocol's statements, which
// [RunProtocolConformance] and [RunConformance] both run.
var protocolTests = []conformanceTest{
	{"PutLinkExistingBumpsGenerationAndReactivates", testPutLinkExisting},
	{"AcquireLease", testAcquireLease},
	{"AcquireLeaseRace64", testAcquireLeaseRace},
	{"ExpiredLeaseTakeoverAfterGrace", testExpiredLeaseTakeover},
	{"ExpiredLeaseGraceKeepsLiveHolder", testExpiredLeaseGrace},
	{"RenewLeaseOnlyByHolder", testRenewLease},
	{"ReleaseLeaseOnlyByHolder", testReleaseLease},
	{"ReleaseRecordsOutcomeAndBackoff", testReleaseOutcome},
	{"AttemptsAndSuspectAreDurable", testAttemptsAndSuspect},
	{"SuspectCarriedByCommit", testSuspectCarriedByCommit},
	{"CommitRefresh", testCommitRefresh},
	{"CommitRefreshStaleGenerationChangesNothing", testCommitRefreshStale},
	{"CommitRefreshFencedByLease", testCommitRefreshFenced},
	{"CommitRefreshRace", testCommitRefreshRace},
	{"CommitRefreshKeepsAccountWhenEmpty", testCommitRefreshAccount},
	{"MarkReauthRequired", testMarkReauth},
	{"MarkReauthRequiredStaleLeaseChangesNothing", testMarkReauthStale},
	{"CommitAfterMarkChangesNothing", testCommitAfterMark},
	{"RecordWrittenOnlyWithTheChange", testRecordWithChange},
	{"ProviderHealthCircuit", testProviderHealthCircuit},
	{"ProviderHealthMisconfigured", testProviderHealthMisconfigured},
	{"ProviderProbeRace", testProviderProbeRace},
	{"ReleaseDegradesOnce", testReleaseDegrades},
	{"AcquireLeaseReportsStateAndFailures", testAcquireReportsState},
}

// testSuspectCarriedByCommit: a takeover records holder_died whatever the
// generation suspected before; a commit writes the suspect the committing
// holder passes for the next generation (previous_holder after a
// takeover: the holder taken over may still have a request on its way),
// which an uncertain attempt keeps and a takeover replaces.
func testSuspectCarriedByCommit(t *testing.T, s tokenbroker.Store) {
	c := ctx(t)
	l := mustLink(t, s)
	g := MustAcquire(t, s, l, "r0", time.Minute)
	ok, err := s.ReleaseLease(c, g, tokenbroker.Release{Class: tokenbroker.FailureUncertain}, tokenbroker.Record{})
	wantBool(t, "ReleaseLease(uncertain)", ok, err, true)
	MustAcquire(t, s, l, "dies", -time.Second)
	Acquire(t, s, l, "r1", time.Minute) // grace starts
	took := Acquire(t, s, l, "r1", time.Minute)
	if !took.Won || took.Suspect != tokenbroker.LossHolderDied {
		t.Fatalf("takeover after an uncertain attempt = %+v; want suspect holder_died", took)
	}
	next := refreshed(l, 2)
	next.Suspect = tokenbroker.LossPreviousHolder
	MustCommit(t, s, took.Lease, next)
	cur := MustGetLink(t, s, "alice", "github")
	if cur.Suspect != tokenbroker.LossPreviousHolder || cur.Attempts != 0 {
		t.Fatalf("after a commit passing previous_holder: suspect %q attempts %d", cur.Suspect, cur.Attempts)
	}
	g2 := Acquire(t, s, cur, "r1", time.Minute)
	if !g2.Won || g2.Attempt != 1 || g2.Suspect != tokenbroker.LossPreviousHolder {
		t.Fatalf("first attempt of the next generation = %+v; want suspect previous_holder", g2)
	}
	ok, err = s.ReleaseLease(c, g2.Lease, tokenbroker.Release{Class: tokenbroker.FailureUncertain}, tokenbroker.Record{})
	wantBool(t, "ReleaseLease(uncertain)", ok, err, true)
	if got := MustGetLink(t, s, "alice", "github"); got.Suspect != tokenbroker.LossPreviousHolder {
		t.Fatalf("after an uncertain attempt: suspect %q, want previous_holder kept", got.Suspect)
	}
	MustAcquire(t, s, cur, "dies", -time.Second)
	Acquire(t, s, cur, "r2", time.Minute) // grace starts
	if g3 := Acquire(t, s, cur, "r2", time.Minute); !g3.Won || g3.Suspect != tokenbroker.LossHolderDied {
		t.Fatalf("takeover in a previous_holder generation = %+v; want suspect holder_died", g3)
	} else {
		r := refreshed(cur, 3)
		r.Suspect = "" // passes none
		MustCommit(t, s, g3.Lease, r)
	}
	if got := MustGetLink(t, s, "alice", "github"); got.Suspect != "" {
		t.Fatalf("after a commit passing none: suspect %q, want none", got.Suspect)
	}
}
