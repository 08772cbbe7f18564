package refresh_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/refresh"
)

// The tests of this file are interleavings the simulation (refresh/sim)
// found, replayed against the real stores and fakeidp.

// pausedAcquire holds the answer of the first lease acquisition it wins
// until resume is closed: a process frozen (paused, starved) right after
// the database granted it the lease.
type pausedAcquire struct {
	replicaStore
	once   sync.Once
	won    chan struct{}
	resume chan struct{}
}

func (p *pausedAcquire) AcquireLease(ctx context.Context, r tokenbroker.LeaseRequest) (*tokenbroker.LeaseGrant, error) {
	g, err := p.replicaStore.AcquireLease(ctx, r)
	if err == nil && g.Won {
		p.once.Do(func() {
			close(p.won)
			<-p.resume
		})
	}
	return g, err
}

func shortLease(cfg *refresh.Config) {
	cfg.LeaseTTL, cfg.Grace, cfg.PollInterval, cfg.CommitRetryInterval = time.Second, 200*time.Millisecond, 50*time.Millisecond, 20*time.Millisecond
}

// TestLeaseWonTooLateIsNotUsed: a replica wins the lease and freezes
// before it can send; its lease expires, another replica takes over and
// refreshes. When the first wakes up, more than a lease's time has passed
// on its clock since it asked: it must not send the refresh token (its
// successor spent it already, and the provider would revoke the grant).
// Without the check, fakeidp sees the spent token again and revokes the
// family: two calls, one reuse detection.
func TestLeaseWonTooLateIsNotUsed(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "sqlite", replicas: 2})
	frozen := &pausedAcquire{replicaStore: e.stores[0], won: make(chan struct{}), resume: make(chan struct{})}
	a := e.coordinator(0, nil, func(cfg *refresh.Config) { shortLease(cfg); cfg.Store = frozen })
	b := e.coordinator(1, nil, shortLease)
	e.seed("u1")
	e.clock.Advance(2 * time.Hour)

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	type result struct {
		tok *tokenbroker.Token
		err error
	}
	aDone := make(chan result, 1)
	go func() {
		tok, err := a.Token(ctx, providerID, "u1", 0)
		aDone <- result{tok, err}
	}()
	resume := sync.OnceFunc(func() { close(frozen.resume) })
	defer resume()
	recv(t, frozen.won, "replica a to win the lease")

	// b takes the expired lease over and refreshes.
	tok, err := b.Token(ctx, providerID, "u1", 0)
	if err != nil {
		t.Fatalf("b: %v", err)
	}
	// a wakes up a lease's time later.
	e.clock.Advance(2 * time.Second)
	resume()
	r := <-aDone
	if r.err != nil || r.tok.AccessToken != tok.AccessToken {
		t.Fatalf("a = %v, %v; want b's token", r.tok, r.err)
	}
	if st := e.idp.Stats(); st.RefreshCalls != 1 || st.ReuseDetections != 0 {
		t.Fatalf("provider refresh calls %d, reuse detections %d; want 1 and 0 (a must not send the spent token)", st.RefreshCalls, st.ReuseDetections)
	}
	if l := e.link("u1"); l.State != tokenbroker.LinkActive || l.Generation != 2 {
		t.Fatalf("link %s at generation %d, want active at 2", l.State, l.Generation)
	}
}
