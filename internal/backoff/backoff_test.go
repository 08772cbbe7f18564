package backoff

import (
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	fixed := func(f float64) func() float64 { return func() float64 { return f } }
	p := Policy{Base: 100 * time.Millisecond, Max: time.Second}
	for _, tc := range []struct {
		attempt int
		rand    float64
		want    time.Duration
	}{
		{0, 0, 50 * time.Millisecond},   // half of Base at the least
		{0, 0.5, 75 * time.Millisecond}, // spread over the other half
		{1, 0, 100 * time.Millisecond},  // doubled
		{3, 0, 400 * time.Millisecond},
		{4, 0, 500 * time.Millisecond}, // capped at Max before jitter
		{4, 0.5, 750 * time.Millisecond},
		{200, 0, 500 * time.Millisecond}, // no overflow past the cap
		{-1, 0, 50 * time.Millisecond},
	} {
		p.Rand = fixed(tc.rand)
		if got := p.Delay(tc.attempt); got != tc.want {
			t.Errorf("Delay(%d) with rand %v = %v, want %v", tc.attempt, tc.rand, got, tc.want)
		}
	}
}

// TestDelayNoShiftOverflow: a base whose doubling overflows int64 before
// the attempt count's cap still waits the capped delay (Base<<32 here
// wraps to 2^32 ns, about 4 s, which a plain shift-then-compare took for
// a delay under the cap).
func TestDelayNoShiftOverflow(t *testing.T) {
	p := Policy{Base: 1<<33 + 1, Max: 5 * time.Minute, Rand: func() float64 { return 0 }}
	for _, attempt := range []int{30, 31, 32, 100} {
		if got := p.Delay(attempt); got != 150*time.Second {
			t.Errorf("Delay(%d) = %v, want 2m30s (half the cap)", attempt, got)
		}
	}
}

func TestDelayDefaultRandStaysInRange(t *testing.T) {
	p := Policy{Base: time.Second, Max: time.Second}
	for range 1000 {
		if d := p.Delay(0); d < 500*time.Millisecond || d >= time.Second {
			t.Fatalf("Delay = %v, want [500ms, 1s)", d)
		}
	}
}
