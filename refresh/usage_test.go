package refresh_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/refresh"
)

// useSpy records the batches a UseRecorder writes.
type useSpy struct {
	mu      sync.Mutex
	batches [][]tokenbroker.LinkKey
}

func (s *useSpy) RecordLinkUse(_ context.Context, links []tokenbroker.LinkKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, slices.Clone(links))
	return nil
}

func (s *useSpy) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, b := range s.batches {
		for _, k := range b {
			out = append(out, k.UserID+"/"+k.ProviderID)
		}
	}
	s.batches = nil
	slices.Sort(out)
	return out
}

// TestUseRecorderWritesEachLinkOncePerInterval: however many requests touch
// a link, a flush writes it once; nothing is written on the token path.
func TestUseRecorderWritesEachLinkOncePerInterval(t *testing.T) {
	spy := &useSpy{}
	u := refresh.NewUseRecorder(spy, time.Hour, nil, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				u.Touch("github", "alice")
				u.Touch("gitlab", fmt.Sprintf("u%d", (g*1000+i)%3))
			}
		})
	}
	wg.Wait()
	if got := spy.take(); len(got) != 0 {
		t.Fatalf("touches wrote %v before a flush", got)
	}
	u.Flush(context.Background())
	if got, want := spy.take(), []string{"alice/github", "u0/gitlab", "u1/gitlab", "u2/gitlab"}; !slices.Equal(got, want) {
		t.Fatalf("first flush wrote %v, want %v", got, want)
	}
	u.Flush(context.Background())
	if got := spy.take(); len(got) != 0 {
		t.Fatalf("a flush with no touches wrote %v", got)
	}
	u.Touch("github", "alice")
	u.Close() // writes what is left
	if got := spy.take(); !slices.Equal(got, []string{"alice/github"}) {
		t.Fatalf("Close wrote %v", got)
	}
}

// TestTrackUseCountsAndMarksUse: every token request counts by outcome, and
// the links asked for (not missing ones) get their last use written at the
// next flush, which also makes an idle link active again.
func TestTrackUseCountsAndMarksUse(t *testing.T) {
	e := MustEnv(t, envOptions{kind: "sqlite"})
	reg := prometheus.NewRegistry()
	m := refresh.NewMetrics(reg)
	c := e.coordinator(0, nil, func(cfg *refresh.Config) { cfg.Metrics = m })
	u := refresh.NewUseRecorder(e.stores[0], time.Hour, nil, nil)
	ts := refresh.TrackUse(c, u, m)
	l, _ := e.seed("alice")
	ok, err := e.stores[0].MarkLinkIdle(context.Background(), l.ID, l.Generation, l.LastUsedAt.Add(time.Millisecond), tokenbroker.Record{})
	if err != nil || !ok {
		t.Fatalf("MarkLinkIdle = %v, %v", ok, err)
	}
	waitPast(t, e.stores[0], l.LastUsedAt)
	for range 3 {
		if _, err := ts.Token(context.Background(), providerID, "alice", 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ts.Token(context.Background(), providerID, "nobody", 0); !tokenbroker.IsNotFound(err) {
		t.Fatalf("missing link: %v", err)
	}
	if _, err := ts.Token(context.Background(), providerID, "alice", -1); tokenbroker.ErrorCode(err) != tokenbroker.EINVALID {
		t.Fatalf("negative min_valid: %v", err)
	}
	if got := e.link("alice"); got.State != tokenbroker.LinkIdle || !got.LastUsedAt.Equal(l.LastUsedAt) {
		t.Fatalf("before the flush: %s, last used %v; want untouched", got.State, got.LastUsedAt)
	}
	u.Flush(context.Background())
	got := e.link("alice")
	if got.State != tokenbroker.LinkActive || !got.LastUsedAt.After(l.LastUsedAt) {
		t.Fatalf("after the flush: %s, last used %v (was %v); want active, later", got.State, got.LastUsedAt, l.LastUsedAt)
	}
	if _, err := e.stores[0].GetLink(context.Background(), "nobody", providerID); !tokenbroker.IsNotFound(err) {
		t.Fatalf("a use of a missing link made one: %v", err)
	}
	want := `
# HELP tokenbroker_token_requests_total Token requests by outcome: ok, canceled, or the error code (reauth_required, provider_unavailable, provider_misconfigured, store_unavailable, not_found, invalid_request, internal).
# TYPE tokenbroker_token_requests_total counter
tokenbroker_token_requests_total{outcome="canceled"} 0
tokenbroker_token_requests_total{outcome="internal"} 0
tokenbroker_token_requests_total{outcome="invalid_request"} 1
tokenbroker_token_requests_total{outcome="not_found"} 1
tokenbroker_token_requests_total{outcome="ok"} 3
tokenbroker_token_requests_total{outcome="provider_misconfigured"} 0
tokenbroker_token_requests_total{outcome="provider_unavailable"} 0
tokenbroker_token_requests_total{outcome="reauth_required"} 0
tokenbroker_token_requests_total{outcome="store_unavailable"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tokenbroker_token_requests_total"); err != nil {
		t.Fatal(err)
	}
}

type fixedTokens struct{ t *tokenbroker.Token }

func (f fixedTokens) Token(context.Context, string, string, time.Duration) (*tokenbroker.Token, error) {
	return f.t, nil
}

// BenchmarkTrackUse is what TrackUse adds to a token request (the counter
// and the in-memory touch), side by side with the bare service, from many
// goroutines over 10,000 links: compare its ns/op with
// httpapi's BenchmarkTokenEndpoint (docs/benchmarks.md).
func BenchmarkTrackUse(b *testing.B) {
	tok := &tokenbroker.Token{AccessToken: "at"}
	users := make([]string, 10000)
	for i := range users {
		users[i] = fmt.Sprintf("user-%05d", i)
	}
	for _, bc := range []struct {
		name string
		ts   tokenbroker.TokenService
	}{
		{"bare", fixedTokens{tok}},
		{"tracked", refresh.TrackUse(fixedTokens{tok}, refresh.NewUseRecorder(&useSpy{}, time.Hour, nil, nil), refresh.NewMetrics(nil))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, err := bc.ts.Token(context.Background(), "github", users[i%len(users)], 0); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		})
	}
}
