package httpapi

import (
	"sync"
	"time"
)

// replayLog remembers the workload JWTs whose use was audited, until they
// expire, so the audit trail marks a JWT presented again (allowed: it is a
// bearer token) as a replay. It is per server and bounded; when full it
// forgets everything (a missed mark, never a refusal). Its lock guards its
// map only; no refresh invariant of docs/design.md is involved.
type replayLog struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]time.Time
}

const maxReplayEntries = 50000

func newReplayLog(now func() time.Time) *replayLog {
	return &replayLog{now: now, m: map[string]time.Time{}}
}

// seen records key until until and reports whether it was there already.
func (r *replayLog) seen(key string, until time.Time) bool {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if u, ok := r.m[key]; ok && now.Before(u) {
		return true
	}
	if len(r.m) >= maxReplayEntries {
		for k, u := range r.m {
			if !now.Before(u) {
				delete(r.m, k)
			}
		}
		if len(r.m) >= maxReplayEntries {
			clear(r.m)
		}
	}
	r.m[key] = until
	return false
}
