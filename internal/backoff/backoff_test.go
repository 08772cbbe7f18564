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

func TestDelayDefaultRandStaysInRange(t *testing.T) {
	p := Policy{Base: time.Second, Max: time.Second}
	for range 1000 {
		if d := p.Delay(0); d < 500*time.Millisecond || d >= time.Second {
			t.Fatalf("Delay = %v, want [500ms, 1s)", d)
		}
	}
}
