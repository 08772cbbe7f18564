package signal

import "sync"

// Hub fans a link's signal out to the subscribers of that link in this
// process. The zero value is not usable; use [NewHub]. A Hub is safe for
// concurrent use.
type Hub struct {
	mu       sync.Mutex
	subs     map[int64]map[*sub]struct{}
	watchers map[*watcher]struct{}
}

type watcher struct{ fn func(linkID int64) }

type sub struct{ ch chan struct{} }

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{subs: make(map[int64]map[*sub]struct{})} }

// Subscribe returns a channel that receives after each [Hub.Signal] of
// linkID (coalesced, capacity one) and a cancel function that must be
// called; cancel is idempotent.
func (h *Hub) Subscribe(linkID int64) (<-chan struct{}, func()) {
	s := &sub{ch: make(chan struct{}, 1)}
	h.mu.Lock()
	m := h.subs[linkID]
	if m == nil {
		m = make(map[*sub]struct{})
		h.subs[linkID] = m
	}
	m[s] = struct{}{}
	h.mu.Unlock()
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if m := h.subs[linkID]; m != nil {
				delete(m, s)
				if len(m) == 0 {
					delete(h.subs, linkID)
				}
			}
		})
	}
}

// OnChange registers fn to be called with the link id of every
// [Hub.Signal], and with 0 on [Hub.SignalAll]. fn runs under the hub's
// lock: it must be quick and must not call the hub. The returned cancel
// is idempotent.
func (h *Hub) OnChange(fn func(linkID int64)) func() {
	w := &watcher{fn: fn}
	h.mu.Lock()
	if h.watchers == nil {
		h.watchers = make(map[*watcher]struct{})
	}
	h.watchers[w] = struct{}{}
	h.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.watchers, w)
			h.mu.Unlock()
		})
	}
}

// ForgetAll tells the change watchers (not the subscribers) that any link
// may have changed unseen, for a listener that just lost its connection.
func (h *Hub) ForgetAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers {
		w.fn(0)
	}
}

// Signal wakes every subscriber of linkID without blocking.
func (h *Hub) Signal(linkID int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers {
		w.fn(linkID)
	}
	for s := range h.subs[linkID] {
		wake(s.ch)
	}
}

// SignalAll wakes every subscriber of every link, for when signals may
// have been missed (a reconnecting listener).
func (h *Hub) SignalAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers {
		w.fn(0)
	}
	for _, m := range h.subs {
		for s := range m {
			wake(s.ch)
		}
	}
}

// Len returns the number of links with subscribers.
func (h *Hub) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default: // a signal is already pending: coalesce
	}
}
