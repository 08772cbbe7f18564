// Package backoff computes the delays between retries: capped exponential
// growth with jitter, so that replicas which failed together do not retry
// in step. It is the one backoff of tokenbroker (the refresh coordinator's
// retries, the PostgreSQL listener's reconnections); it holds no state and
// never sleeps, so callers wait with their own timer and context, and a
// test drives it exactly through [Policy.Rand].
package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy shapes the delays. The zero value is not useful: set Base and Max.
type Policy struct {
	// Base is the delay before the first retry (attempt 0), before jitter.
	Base time.Duration
	// Max caps the delay, before jitter.
	Max time.Duration
	// Rand returns a number in [0, 1) (default math/rand/v2.Float64). It
	// must be safe for concurrent use if the Policy is.
	Rand func() float64
}

// Delay returns the delay before retry attempt (0 for the first retry):
// Base doubled attempt times, capped at Max, then scaled by a factor drawn
// uniformly from [0.5, 1) ("equal jitter": never less than half the capped
// delay, so a retry is never immediate, yet spread over the other half).
func (p Policy) Delay(attempt int) time.Duration {
	d, a := p.Max, min(max(attempt, 0), 62)
	if p.Base <= p.Max>>a { // Base<<a stays within Max, without overflow
		d = p.Base << a
	}
	if d <= 0 {
		d = p.Max
	}
	r := p.Rand
	if r == nil {
		r = rand.Float64
	}
	return time.Duration(float64(d) * (0.5 + r()/2))
}
