package client

import (
	"context"
	"time"

	"golang.org/x/oauth2"
)

// TokenSourceEarlyExpiry is how long before its expiry a token from
// [Client.TokenSource] is considered stale and asked for again. The broker
// is asked for a token valid at least twice as long, so a fresh answer is
// never already stale.
const TokenSourceEarlyExpiry = 30 * time.Second

// TokenSource returns an [oauth2.TokenSource] for userID's link to
// providerID, so that
//
//	httpClient := oauth2.NewClient(ctx, broker.TokenSource(ctx, userID, providerID))
//
// sends the user's access token to the provider. The source keeps the
// current token and asks the broker only when it is within
// [TokenSourceEarlyExpiry] of expiring (oauth2.ReuseTokenSourceWithExpiry
// semantics); the broker does the refreshing, so the program never sees a
// refresh token. ctx is used for the broker requests. It is safe for
// concurrent use. Errors are [*Error]s (reauth_required carries the
// connect URL), wrapped by oauth2's transport when they occur during a
// request.
func (c *Client) TokenSource(ctx context.Context, userID, providerID string) oauth2.TokenSource {
	src := &brokerSource{ctx: ctx, c: c, userID: userID, providerID: providerID}
	return oauth2.ReuseTokenSourceWithExpiry(nil, src, TokenSourceEarlyExpiry)
}

type brokerSource struct {
	ctx                context.Context
	c                  *Client
	userID, providerID string
}

func (s *brokerSource) Token() (*oauth2.Token, error) {
	t, err := s.c.Token(s.ctx, s.userID, s.providerID, 2*TokenSourceEarlyExpiry)
	if IsCode(err, CodeInvalidRequest) {
		// The provider's tokens live shorter than that: take what it gives.
		t, err = s.c.Token(s.ctx, s.userID, s.providerID, 0)
	}
	if err != nil {
		return nil, err
	}
	tok := &oauth2.Token{AccessToken: t.AccessToken, TokenType: t.TokenType, Expiry: t.Expiry}
	if len(t.Extra) > 0 {
		extra := make(map[string]any, len(t.Extra))
		for k, v := range t.Extra {
			extra[k] = v
		}
		tok = tok.WithExtra(extra)
	}
	return tok, nil
}
