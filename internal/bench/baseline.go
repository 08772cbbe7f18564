package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// Strategy names, as `tokenbroker bench herd --strategy` spells them.
// Coordinated is the refresh coordinator of package refresh, run by real
// `tokenbroker serve` replicas; the others are the [Baseline]s, run by
// replicas of the hidden `tokenbroker bench replica` command.
const (
	StrategyCoordinated = "coordinated"
	StrategyNaive       = "naive"
	StrategyCASOnly     = "cas-only"
)

// Strategies lists every strategy name.
var Strategies = []string{StrategyCoordinated, StrategyNaive, StrategyCASOnly}

// Baseline is one of the two broken refresh strategies docs/design.md
// rejects, kept only so benchmarks can measure them next to the refresh
// coordinator. Never use one in production; only the bench replica command
// wires one.
type Baseline struct {
	store     tokenbroker.Store
	providers tokenbroker.Providers
	now       func() time.Time
	cas       bool
}

// NewNaive returns the strategy of a per-request oauth2.TokenSource: every
// caller that sees an expired token refreshes with its own copy of the
// refresh token and writes the result unconditionally; a caller whose
// refresh is rejected marks the link broken, wiping whatever a winner wrote.
func NewNaive(store tokenbroker.Store, providers tokenbroker.Providers, now func() time.Time) *Baseline {
	if now == nil {
		now = time.Now
	}
	return &Baseline{store: store, providers: providers, now: now}
}

// NewCASOnly returns the strategy of an optimistic write alone: every caller
// that sees an expired token refreshes with its own copy, writes by
// compare-and-swap on the generation, and a loser returns the provider's
// error without touching the link.
func NewCASOnly(store tokenbroker.Store, providers tokenbroker.Providers, now func() time.Time) *Baseline {
	b := NewNaive(store, providers, now)
	b.cas = true
	return b
}

// NewBaseline returns the baseline named strategy ([StrategyNaive] or
// [StrategyCASOnly]).
func NewBaseline(strategy string, store tokenbroker.Store, providers tokenbroker.Providers) (*Baseline, error) {
	switch strategy {
	case StrategyNaive:
		return NewNaive(store, providers, nil), nil
	case StrategyCASOnly:
		return NewCASOnly(store, providers, nil), nil
	}
	return nil, fmt.Errorf("unknown baseline strategy %q: want %s or %s", strategy, StrategyNaive, StrategyCASOnly)
}

// Token implements [tokenbroker.TokenService], badly on purpose.
func (b *Baseline) Token(ctx context.Context, providerID, userID string, minValid time.Duration) (*tokenbroker.Token, error) {
	p, err := b.providers.Provider(providerID)
	if err != nil {
		return nil, err
	}
	l, err := b.store.GetLink(ctx, userID, providerID)
	if err != nil {
		return nil, err
	}
	if l.State == tokenbroker.LinkReauthRequired {
		return nil, &tokenbroker.ReauthRequiredError{UserID: userID, ProviderID: providerID, Reason: l.FailureReason}
	}
	if l.Token.ValidFor(b.now(), max(p.RefreshAhead(), minValid)) {
		return tokenOut(l), nil
	}
	tok, perr := p.Refresh(ctx, l.Token.RefreshToken)
	if perr != nil {
		var pe *tokenbroker.ProviderError
		if errors.As(perr, &pe) && pe.Class == tokenbroker.FailureRejected {
			if !b.cas {
				// The careless loser: it marks the link broken whatever
				// generation is there now, wiping a winner's token.
				if cur, err := b.store.GetLink(ctx, userID, providerID); err == nil {
					if lease, ok := b.grab(ctx, cur.ID, cur.Generation); ok {
						_, _ = b.store.MarkReauthRequired(ctx, lease, tokenbroker.Reauth{Reason: tokenbroker.ReasonRevoked, Detail: pe.Reason()}, tokenbroker.Record{})
					}
				}
			}
			return nil, &tokenbroker.ReauthRequiredError{UserID: userID, ProviderID: providerID, Reason: pe.Reason()}
		}
		return nil, &tokenbroker.ProviderUnavailableError{ProviderID: providerID, RetryAfter: time.Second, Cause: perr}
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken = l.Token.RefreshToken
	}
	next := *l
	next.Token = *tok
	if b.cas {
		// Compare-and-swap on the generation read before the call.
		if lease, ok := b.grab(ctx, l.ID, l.Generation); ok {
			if _, err := b.store.CommitRefresh(ctx, lease, &next, tokenbroker.Record{}); err != nil {
				return nil, err
			}
		}
		return tokenOut(&next), nil
	}
	if _, err := b.store.PutLink(ctx, &next, tokenbroker.Record{}); err != nil {
		return nil, err
	}
	return tokenOut(&next), nil
}

// tokenOut is the token a caller gets: never the refresh token.
func tokenOut(l *tokenbroker.Link) *tokenbroker.Token {
	t := l.Token
	t.RefreshToken = ""
	return &t
}

// grab takes the lease of a generation without respecting anybody's: the
// baselines have no lease protocol, and every store write of a refresh is
// fenced by a lease, so they take one that expired at once (a negative TTL,
// no grace) and take it over from each other.
func (b *Baseline) grab(ctx context.Context, id, generation int64) (tokenbroker.Lease, bool) {
	for range 3 {
		g, err := b.store.AcquireLease(ctx, tokenbroker.LeaseRequest{LinkID: id, Generation: generation, Owner: "baseline", TTL: -time.Millisecond})
		if err != nil {
			return tokenbroker.Lease{}, false
		}
		if g.Won {
			return g.Lease, true
		}
		if g.Generation != generation || g.State != tokenbroker.LinkActive {
			return tokenbroker.Lease{}, false
		}
	}
	return tokenbroker.Lease{}, false
}
