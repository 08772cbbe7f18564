package refresh

import (
	"context"
	"errors"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// Strategy names, as `tokenbroker serve --refresh-strategy` and
// `tokenbroker bench herd --strategy` spell them.
const (
	StrategyCoordinated = "coordinated"
	StrategyNaive       = "naive"
	StrategyCASOnly     = "cas-only"
)

// Baseline is one of the two broken refresh strategies DESIGN.md rejects,
// kept only so benchmarks can measure them next to the [Coordinator]. Never
// use one in production.
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
		if errors.As(perr, &pe) && pe.Permanent {
			if !b.cas {
				// The careless loser: it marks the link broken whatever
				// generation is there now, wiping a winner's token.
				if cur, err := b.store.GetLink(ctx, userID, providerID); err == nil {
					_, _ = b.store.MarkReauthRequired(ctx, cur.ID, cur.Generation, pe.Reason())
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
		if _, err := b.store.CommitRefresh(ctx, &next); err != nil {
			return nil, err
		}
		return tokenOut(&next), nil
	}
	if _, err := b.store.PutLink(ctx, &next); err != nil {
		return nil, err
	}
	return tokenOut(&next), nil
}
