package refresh_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/refresh"
	"github.com/tokenbroker/tokenbroker/store/storetest"
)

// TestCacheFollowsChangesOnOtherReplicas: the fast-path cache of replica A
// (with a TTL of an hour, so only invalidation can help) stops serving a
// link as soon as replica B re-imports it, breaks it or deletes it. Without
// the change feed's invalidation A would keep serving the old token.
func TestCacheFollowsChangesOnOtherReplicas(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := MustEnv(t, envOptions{kind: kind, replicas: 2})
			ctx := context.Background()
			l, first := e.seed("u1")
			// Subscribed before anything starts the PostgreSQL listener, so
			// its connection's signal cannot come before the subscription.
			sig, cancel := e.stores[0].Subscribe(l.ID)
			defer cancel()
			a := e.coordinator(0, nil, func(cfg *refresh.Config) {
				cfg.Changes = e.stores[0].(tokenbroker.ChangeFeed)
				cfg.CacheTTL = time.Hour
			})
			defer a.Close()
			// The first signal on a fresh PostgreSQL listener is its
			// connection; drain it so the waits below see the writes.
			if got, err := a.Token(ctx, providerID, "u1", 0); err != nil || got.AccessToken != first.AccessToken {
				t.Fatalf("first read: %v", err)
			}
			if kind == "postgres" {
				recv(t, sig, "the listener to connect")
			}
			if got, _ := a.Token(ctx, providerID, "u1", 0); got.AccessToken != first.AccessToken {
				t.Fatal("cached read differs")
			}

			// B re-imports: A must serve the new token.
			second, _ := e.idp.IssueToken("u1")
			if _, err := e.stores[1].PutLink(ctx, &tokenbroker.Link{UserID: "u1", ProviderID: providerID,
				Token: tokenbroker.Token{AccessToken: second.AccessToken, RefreshToken: second.RefreshToken, Expiry: second.Expiry}}, tokenbroker.Record{}); err != nil {
				t.Fatal(err)
			}
			recv(t, sig, "the import's signal")
			if got, err := a.Token(ctx, providerID, "u1", 0); err != nil || got.AccessToken != second.AccessToken {
				t.Fatalf("after B's import: got old token or %v", err)
			}

			// B breaks it: A must answer reauth_required.
			cur := e.link("u1")
			lease := storetest.MustAcquire(t, e.stores[1], cur, "b", time.Minute)
			if ok, err := e.stores[1].MarkReauthRequired(ctx, lease, tokenbroker.Reauth{Reason: tokenbroker.ReasonRevoked, Detail: "invalid_grant"}, tokenbroker.Record{}); err != nil || !ok {
				t.Fatal(ok, err)
			}
			recv(t, sig, "the mark's signal")
			if _, err := a.Token(ctx, providerID, "u1", 0); !errors.Is(err, tokenbroker.ErrReauthRequired) {
				t.Fatalf("after B's mark: %v", err)
			}

			// B deletes it: A must answer not found.
			third, _ := e.idp.IssueToken("u1")
			if _, err := e.stores[1].PutLink(ctx, &tokenbroker.Link{UserID: "u1", ProviderID: providerID,
				Token: tokenbroker.Token{AccessToken: third.AccessToken, RefreshToken: third.RefreshToken, Expiry: third.Expiry}}, tokenbroker.Record{}); err != nil {
				t.Fatal(err)
			}
			recv(t, sig, "the second import's signal")
			if _, err := a.Token(ctx, providerID, "u1", 0); err != nil {
				t.Fatal(err)
			}
			if err := e.stores[1].DeleteLink(ctx, "u1", providerID, tokenbroker.Record{}); err != nil {
				t.Fatal(err)
			}
			recv(t, sig, "the delete's signal")
			if _, err := a.Token(ctx, providerID, "u1", 0); !tokenbroker.IsNotFound(err) {
				t.Fatalf("after B's delete: %v", err)
			}
		})
	}
}

// TestCacheNeverServesExpired: a cached entry is judged again at each hit;
// once the token is inside the refresh window the coordinator refreshes.
func TestCacheNeverServesExpired(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "sqlite", refreshAhead: time.Minute})
	a := e.coordinator(0, nil, func(cfg *refresh.Config) {
		cfg.Changes = e.stores[0].(tokenbroker.ChangeFeed)
		cfg.CacheTTL = time.Hour
	})
	defer a.Close()
	_, first := e.seed("u1")
	if got, err := a.Token(context.Background(), providerID, "u1", 0); err != nil || got.AccessToken != first.AccessToken {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Hour)
	got, err := a.Token(context.Background(), providerID, "u1", 0)
	if err != nil || got.AccessToken == first.AccessToken {
		t.Fatalf("served an expired cached token (%v)", err)
	}
	if n := e.idp.Stats().RefreshCalls; n != 1 {
		t.Fatalf("refresh calls = %d", n)
	}
}
