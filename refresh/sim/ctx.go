package sim

import (
	"context"
	"sync"
	"time"
)

// simCtx is a context whose deadline is on the simulated clock: the
// scheduler fires it (as a timer) when it chooses to, so the coordinator's
// timeouts and the callers' deadlines are events of the schedule like any
// other. It implements the context package's AfterFunc hook, so contexts
// derived from it are cancelled synchronously, in the scheduler's step.
type simCtx struct {
	parent   context.Context
	deadline time.Time
	d        time.Duration
	origin   string // "caller" (a caller's deadline) or "timeout" (a coordinator's Clock.WithTimeout)

	done chan struct{}
	mu   sync.Mutex
	err  error
	// ownDeadline: it ended by its own deadline (not by its parent or a
	// cancel).
	ownDeadline bool
	afters      map[int]func()
	nextAfter   int
	stopParent  func() bool
}

type simCtxKey struct{}

func newSimCtx(parent context.Context, deadline time.Time, d time.Duration, origin string) *simCtx {
	c := &simCtx{parent: parent, deadline: deadline, d: d, origin: origin, done: make(chan struct{}), afters: map[int]func(){}}
	if parent.Done() != nil {
		// A parent that ends ends this context too. A simCtx parent runs
		// this synchronously when it ends; the context package's own run
		// it on a goroutine of the bubble.
		c.stopParent = context.AfterFunc(parent, func() { c.end(parent.Err(), false) })
	}
	return c
}

func (c *simCtx) Deadline() (time.Time, bool) {
	if pd, ok := c.parent.Deadline(); ok && pd.Before(c.deadline) {
		return pd, true
	}
	return c.deadline, true
}

func (c *simCtx) Done() <-chan struct{} { return c.done }

func (c *simCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *simCtx) Value(k any) any {
	if k == (simCtxKey{}) {
		return c
	}
	return c.parent.Value(k)
}

// AfterFunc is the hook the context package uses for children of a
// context that is not its own: f runs when c ends.
func (c *simCtx) AfterFunc(f func()) func() bool {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	id := c.nextAfter
	c.nextAfter++
	c.afters[id] = f
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.afters[id]
		delete(c.afters, id)
		return ok
	}
}

// end ends c with err (once) and runs its after-functions.
func (c *simCtx) end(err error, own bool) bool {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return false
	}
	c.err, c.ownDeadline = err, own
	close(c.done)
	fs := make([]func(), 0, len(c.afters))
	for i := range c.nextAfter {
		if f, ok := c.afters[i]; ok {
			fs = append(fs, f)
		}
	}
	c.afters = nil
	c.mu.Unlock()
	if c.stopParent != nil {
		c.stopParent()
	}
	for _, f := range fs {
		f()
	}
	return true
}

func (c *simCtx) endedByOwnDeadline() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ownDeadline
}

// nearestSimCtx returns the innermost simCtx that ctx derives from.
func nearestSimCtx(ctx context.Context) *simCtx {
	c, _ := ctx.Value(simCtxKey{}).(*simCtx)
	return c
}

type callKey struct{}

// callID names the caller's call a context belongs to ("-" for none): the
// flight a call starts, and its lease renewal, carry the id of that call.
func callID(ctx context.Context) string {
	if id, ok := ctx.Value(callKey{}).(string); ok {
		return id
	}
	return "-"
}
