package signal

import "testing"

func TestHub(t *testing.T) {
	h := NewHub()
	a, cancelA := h.Subscribe(1)
	b, cancelB := h.Subscribe(2)
	defer cancelB()

	// Coalescing: two signals, one pending receive, sender never blocks.
	h.Signal(1)
	h.Signal(1)
	if got := len(a); got != 1 {
		t.Fatalf("pending signals on a = %d, want 1", got)
	}
	<-a
	if len(b) != 0 {
		t.Fatal("b woken by a signal for another link")
	}

	h.SignalAll()
	<-a
	<-b

	cancelA()
	cancelA() // idempotent
	h.Signal(1)
	if len(a) != 0 {
		t.Fatal("cancelled subscriber woken")
	}
	if h.Len() != 1 {
		t.Fatalf("Len = %d, want 1", h.Len())
	}
}
