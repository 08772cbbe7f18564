// Package await is how tests wait for an event that the code under test
// signals on a channel (a store's change signal, a replica's readiness):
// they wait for the event, never sleep and poll, and fail after a generous
// bound rather than hang until the test binary's timeout.
package await

import (
	"testing"
	"time"
)

// Bound is how long [Signal] waits before it fails the test.
const Bound = 30 * time.Second

// Signal waits for a value on ch, or its close. After [Bound] it fails tb,
// naming what it waited for.
func Signal(tb testing.TB, what string, ch <-chan struct{}) {
	tb.Helper()
	select {
	case <-ch:
	case <-time.After(Bound):
		tb.Fatalf("timed out waiting for %s", what)
	}
}
