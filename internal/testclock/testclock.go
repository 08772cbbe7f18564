// Package testclock is the settable clock tests inject where code reads
// the time (fakeidp's Config.Now, the providers' and the coordinator's
// Now): token expiry is then driven exactly, never by sleeping.
package testclock

import (
	"context"
	"sync"
	"time"
)

// Clock is a settable clock, safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a clock reading t.
func New(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// After waits on the real clock: the waits of the code under test (leases,
// backoff) are bounded by the database's clock, which this clock does not
// move.
func (c *Clock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// WithTimeout bounds ctx on the real clock, as After waits on it.
func (c *Clock) WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}
