package refresh_test

import (
	"context"
	"errors"
	"strings"
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
	e.seedExpired("u1")

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

// TestLateRequestOfATakenOverHolderIsALostRefresh: a holder's request is
// on its way to a slow provider when the holder loses its database; its
// lease expires and another replica takes over, refreshes and commits.
// Then the provider processes the first request: the refresh token is
// spent, reuse detection revokes the grant - and the successor's fresh
// token with it. The loss surfaces at the next refresh, a generation
// later: it must be reported as the lost refresh it is (holder_died), not
// as a revocation by the user. Without the suspicion a takeover passes on
// to the next generation (previous_holder), the link is marked revoked.
func TestLateRequestOfATakenOverHolderIsALostRefresh(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "sqlite", replicas: 2})
	cut := &partitionedStore{replicaStore: e.stores[0]}
	slow := newGated(e.prov)
	a := e.coordinator(0, slow, func(cfg *refresh.Config) {
		shortLease(cfg)
		cfg.Store, cfg.ProviderTimeout = cut, waitTimeout
	})
	b := e.coordinator(1, nil, shortLease)
	e.seedExpired("u1")

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	aDone := make(chan struct{})
	go func() {
		defer close(aDone)
		_, _ = a.Token(ctx, providerID, "u1", 0)
	}()
	release := sync.OnceFunc(func() { close(slow.release) })
	defer func() { release(); cut.cut.Store(false); <-aDone }()
	recv(t, slow.entered, "replica a's request to be on its way")
	cut.cut.Store(true) // a can no longer renew its lease

	if _, err := b.Token(ctx, providerID, "u1", 0); err != nil {
		t.Fatalf("b: %v", err)
	}
	if b.Stats().Takeovers != 1 {
		t.Fatalf("b's stats %+v, want a takeover", b.Stats())
	}
	// a's request reaches the provider now: a spent token.
	release()
	<-aDone
	if st := e.idp.Stats(); st.ReuseDetections != 1 {
		t.Fatalf("reuse detections %d, want 1 (a's late request)", st.ReuseDetections)
	}

	e.clock.Advance(2 * time.Hour)
	_, err := b.Token(ctx, providerID, "u1", 0)
	var re *tokenbroker.ReauthRequiredError
	if !errors.As(err, &re) || re.Code != tokenbroker.ReasonLostRefresh || !strings.Contains(re.Reason, tokenbroker.LossHolderDied) {
		t.Fatalf("the next refresh = %v; want reauth_required lost_refresh (holder_died)", err)
	}
	if b.Stats().LostRefreshes != 1 {
		t.Fatalf("b's lost refreshes = %d, want 1", b.Stats().LostRefreshes)
	}
	if l := e.link("u1"); l.ReauthReason != tokenbroker.ReasonLostRefresh {
		t.Fatalf("link reason %q, want lost_refresh", l.ReauthReason)
	}
}
