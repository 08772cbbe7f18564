package refresh_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/provider"
	"github.com/tokenbroker/tokenbroker/refresh"
	"github.com/tokenbroker/tokenbroker/store/storetest"
)

// eventsOf returns "type/user/reason" of the webhook events written to the
// outbox since the last call.
func eventsOf(t *testing.T, s tokenbroker.Store) []string {
	t.Helper()
	var out []string
	for _, e := range storetest.MustEvents(t, s) {
		out = append(out, string(e.Type)+"/"+e.UserID+"/"+e.Reason)
	}
	return out
}

func wantEventsOf(t *testing.T, s tokenbroker.Store, what string, want ...string) {
	t.Helper()
	if got := eventsOf(t, s); !slices.Equal(got, want) {
		t.Fatalf("%s: events %q, want %q", what, got, want)
	}
}

// TestRevokedThenReconnectedEvents: a link whose grant the provider
// rejects is marked reauth_required with its link.reauth_required event
// (typed reason) in the same write; connecting it again writes
// link.recovered. Each event is written once, however many callers ask.
func TestRevokedThenReconnectedEvents(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "sqlite"})
	c := e.coordinator(0, nil, nil)
	_, seeded := e.seed("u1")
	wantEventsOf(t, e.stores[0], "a new link", "link.created/u1/")
	e.idp.RevokeFamilyOf(seeded.RefreshToken)
	e.clock.Advance(2 * time.Hour)
	for range 3 {
		if _, err := c.Token(context.Background(), providerID, "u1", 0); !errors.Is(err, tokenbroker.ErrReauthRequired) {
			t.Fatalf("revoked link: %v, want reauth_required", err)
		}
	}
	wantEventsOf(t, e.stores[0], "a revoked link", "link.reauth_required/u1/revoked")
	e.seed("u1") // the user connects again
	wantEventsOf(t, e.stores[0], "a reconnect", "link.recovered/u1/reauth_required")
	if _, err := c.Token(context.Background(), providerID, "u1", 0); err != nil {
		t.Fatalf("after the reconnect: %v", err)
	}
	wantEventsOf(t, e.stores[0], "a token of the reconnected link")
}

// TestDegradedOnceThenRecovered: a link whose refreshes keep failing
// transiently for longer than DegradeAfter becomes degraded, once, by the
// failed attempt that finds it so (its link.degraded event in the same
// write); it keeps serving its still-valid token; the next successful
// refresh makes it active again with link.recovered.
func TestDegradedOnceThenRecovered(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "postgres", replicas: 2, refreshAhead: 10 * time.Minute,
		idp: fakeidp.Config{Faults: fakeidp.Faults{P503: 1}}})
	mod := func(cfg *refresh.Config) {
		cfg.RetryBackoff, cfg.RetryBackoffMax = 40*time.Millisecond, 40*time.Millisecond
		cfg.CircuitThreshold = 100
		cfg.DegradeAfter = 20 * time.Millisecond // shorter than one backoff
	}
	cs := []*refresh.Coordinator{e.coordinator(0, nil, mod), e.coordinator(1, nil, mod)}
	_, tok := e.seed("u1")
	st := e.stores[0]
	wantEventsOf(t, st, "a new link", "link.created/u1/")
	e.clock.Advance(55 * time.Minute) // inside the window, still valid

	attempt := func(i int) {
		t.Helper()
		waitPast(t, st, e.link("u1").NextAttemptAt)
		got, err := cs[i%2].Token(context.Background(), providerID, "u1", 0)
		if err != nil || got.AccessToken != tok.AccessToken {
			t.Fatalf("attempt %d: %v; want the still-valid token served", i, err)
		}
	}
	attempt(0)
	if l := e.link("u1"); l.State != tokenbroker.LinkActive || l.Failures != 1 {
		t.Fatalf("after the first failure: %+v", l)
	}
	wantEventsOf(t, st, "the first failure")
	for i := 1; i <= 3; i++ {
		attempt(i)
	}
	if l := e.link("u1"); l.State != tokenbroker.LinkDegraded || l.Failures != 4 {
		t.Fatalf("after four failures over more than DegradeAfter: %+v", l)
	}
	wantEventsOf(t, st, "failures past the threshold", "link.degraded/u1/not_processed")
	audit, err := st.ListAudit(context.Background(), tokenbroker.AuditFilter{Action: tokenbroker.AuditLinkDegraded})
	if err != nil || len(audit) != 1 {
		t.Fatalf("link.degraded audit events = %v, %v; want one", audit, err)
	}

	e.idp.SetFaults(fakeidp.Faults{})
	waitPast(t, st, e.link("u1").NextAttemptAt)
	e.clock.Advance(10 * time.Minute) // expired: the caller waits for the refresh
	got, err := cs[1].Token(context.Background(), providerID, "u1", 0)
	if err != nil || got.AccessToken == tok.AccessToken {
		t.Fatalf("after the outage: %v; want a fresh token", err)
	}
	if l := e.link("u1"); l.State != tokenbroker.LinkActive || l.Failures != 0 {
		t.Fatalf("after the recovery: %+v", l)
	}
	wantEventsOf(t, st, "the recovery", "link.recovered/u1/degraded")
}

// TestProviderEventsOnce: a provider that refuses the client is
// provider.misconfigured once across replicas and probes; the success that
// clears it is provider.recovered, once.
func TestProviderEventsOnce(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "postgres", replicas: 2})
	wrong := mustProviderWith(t, e, func(pc *provider.ProviderConfig) { pc.ClientSecret = "rotated-by-mistake" })
	const probe = 100 * time.Millisecond
	mod := func(cfg *refresh.Config) { cfg.MisconfiguredProbe = probe }
	bad := []*refresh.Coordinator{e.coordinator(0, wrong, mod), e.coordinator(1, wrong, mod)}
	e.seed("u1")
	e.seed("u2")
	wantEventsOf(t, e.stores[0], "two new links", "link.created/u1/", "link.created/u2/")
	e.clock.Advance(2 * time.Hour)
	for round := range 3 {
		for i, u := range []string{"u1", "u2"} {
			if _, err := bad[(round+i)%2].Token(context.Background(), providerID, u, 0); tokenbroker.ErrorCode(err) != tokenbroker.EPROVIDERMISCONFIGURED {
				t.Fatalf("round %d: %v, want provider_misconfigured", round, err)
			}
		}
		h, err := e.stores[0].GetProviderHealth(context.Background(), providerID)
		if err != nil {
			t.Fatal(err)
		}
		waitPast(t, e.stores[0], h.OpenUntil) // the next round probes again
	}
	wantEventsOf(t, e.stores[0], "a misconfigured provider", "provider.misconfigured//invalid_client")
	good := []*refresh.Coordinator{e.coordinator(0, nil, mod), e.coordinator(1, nil, mod)}
	for i, u := range []string{"u1", "u2"} {
		if _, err := good[i].Token(context.Background(), providerID, u, 0); err != nil {
			t.Fatalf("%s after the fix: %v", u, err)
		}
	}
	wantEventsOf(t, e.stores[0], "the fix", "provider.recovered//")
}
