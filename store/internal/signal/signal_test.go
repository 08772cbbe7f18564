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

func TestOnChange(t *testing.T) {
	h := NewHub()
	var got []int64
	cancel := h.OnChange(func(id int64) { got = append(got, id) })
	ch, cancelSub := h.Subscribe(7)
	defer cancelSub()
	h.Signal(7)
	h.Signal(9)
	h.ForgetAll()
	select {
	case <-ch:
	default:
		t.Fatal("subscriber not woken by Signal")
	}
	select {
	case <-ch:
		t.Fatal("ForgetAll woke a subscriber")
	default:
	}
	h.SignalAll()
	cancel()
	h.Signal(7)
	want := []int64{7, 9, 0, 0}
	if len(got) != len(want) {
		t.Fatalf("watcher saw %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("watcher saw %v, want %v", got, want)
		}
	}
}
