package httpapi_test

import (
	"context"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/httpapi/httpapitest"
	"github.com/tokenbroker/tokenbroker/refresh"
)

// BenchmarkTokenEndpointTrackUse measures, side by side in one run, the
// token hot path (as BenchmarkTokenEndpoint) with the coordinator bare and
// wrapped as serve wraps it (refresh.TrackUse: the request counted by
// outcome, the link's use added to the in-memory set written once per
// interval).
func BenchmarkTokenEndpointTrackUse(b *testing.B) {
	for _, bc := range []struct {
		name string
		wrap func(tokenbroker.TokenService) tokenbroker.TokenService
	}{
		{"bare", nil},
		{"tracked", func(ts tokenbroker.TokenService) tokenbroker.TokenService {
			return refresh.TrackUse(ts, refresh.NewUseRecorder(nopUses{}, time.Hour, nil, nil), refresh.NewMetrics(nil))
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			env := MustEnv(b, httpapitest.Options{Tokens: bc.wrap})
			env.MustLink(b, "alice", demo, "alice")
			benchToken(b, env)
		})
	}
}

// nopUses drops the recorder's writes (the benchmark flushes none anyway).
type nopUses struct{}

func (nopUses) RecordLinkUse(context.Context, []tokenbroker.LinkKey) error { return nil }
