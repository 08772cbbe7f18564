package refresh

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// DefaultUseInterval is how often a [UseRecorder] writes the links used
// since its last write.
const DefaultUseInterval = 5 * time.Minute

// UseStore is what a [UseRecorder] writes to.
type UseStore interface {
	RecordLinkUse(ctx context.Context, links []tokenbroker.LinkKey) error
}

// useShards spreads the recorder's set over locks, so that token requests
// of different users on many cores rarely meet on one.
const useShards = 64

// useBatch bounds one RecordLinkUse call.
const useBatch = 1000

// UseRecorder records that links were asked for (their last use, which
// decides whether a link is idle), off the token path: [UseRecorder.Touch]
// only adds the link to an in-memory set, once per interval whatever the
// number of requests, and a background goroutine writes the set every
// interval in batches. A replica that dies loses at most one interval of
// uses, which only delays a link's last use by as much. All methods are
// safe for concurrent use.
type UseRecorder struct {
	store    UseStore
	interval time.Duration
	clock    Clock
	log      *slog.Logger

	shards [useShards]struct {
		mu  sync.Mutex
		set map[tokenbroker.LinkKey]struct{}
	}

	stop, done chan struct{}
	startOnce  sync.Once
	stopOnce   sync.Once
}

// NewUseRecorder returns a recorder writing to store every interval
// (default [DefaultUseInterval]); clock nil is the wall clock. Start it
// with [UseRecorder.Start] and stop it with [UseRecorder.Close].
func NewUseRecorder(store UseStore, interval time.Duration, clock Clock, log *slog.Logger) *UseRecorder {
	if interval <= 0 {
		interval = DefaultUseInterval
	}
	if clock == nil {
		clock = wallClock{}
	}
	if log == nil {
		log = slog.Default()
	}
	u := &UseRecorder{store: store, interval: interval, clock: clock, log: log.With("component", "link-use"),
		stop: make(chan struct{}), done: make(chan struct{})}
	for i := range u.shards {
		u.shards[i].set = map[tokenbroker.LinkKey]struct{}{}
	}
	return u
}

// Touch records that a token of userID's link to providerID was asked for.
// It never blocks on I/O: the first touch of a link in an interval adds it
// to the set, later ones find it there.
func (u *UseRecorder) Touch(providerID, userID string) {
	if u == nil {
		return
	}
	sh := &u.shards[shardOf(userID, providerID)]
	k := tokenbroker.LinkKey{UserID: userID, ProviderID: providerID}
	sh.mu.Lock()
	if _, ok := sh.set[k]; !ok {
		// Copies, so the set does not keep a request's memory alive.
		sh.set[tokenbroker.LinkKey{UserID: strings.Clone(userID), ProviderID: strings.Clone(providerID)}] = struct{}{}
	}
	sh.mu.Unlock()
}

// shardOf is FNV-1a of the key, folded to a shard.
func shardOf(userID, providerID string) int {
	h := uint32(2166136261)
	for i := 0; i < len(userID); i++ {
		h = (h ^ uint32(userID[i])) * 16777619
	}
	for i := 0; i < len(providerID); i++ {
		h = (h ^ uint32(providerID[i])) * 16777619
	}
	return int(h % useShards)
}

// Start runs the background writer.
func (u *UseRecorder) Start() {
	u.startOnce.Do(func() {
		go func() {
			defer close(u.done)
			for {
				select {
				case <-u.stop:
					return
				case <-u.clock.After(u.interval):
				}
				u.Flush(context.Background())
			}
		}()
	})
}

// Close stops the writer and writes what is left.
func (u *UseRecorder) Close() {
	u.stopOnce.Do(func() {
		close(u.stop)
		u.startOnce.Do(func() { close(u.done) }) // never started
		<-u.done
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		u.Flush(ctx)
	})
}

// Flush writes the links touched since the last flush, in batches. A
// batch that fails is logged and dropped: a use is a hint that the next
// touch repeats.
func (u *UseRecorder) Flush(ctx context.Context) {
	var keys []tokenbroker.LinkKey
	for i := range u.shards {
		sh := &u.shards[i]
		sh.mu.Lock()
		set := sh.set
		if len(set) > 0 {
			sh.set = make(map[tokenbroker.LinkKey]struct{}, len(set))
		}
		sh.mu.Unlock()
		for k := range set {
			keys = append(keys, k)
		}
	}
	for len(keys) > 0 {
		n := min(len(keys), useBatch)
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := u.store.RecordLinkUse(wctx, keys[:n])
		cancel()
		if err != nil {
			u.log.Warn("record link use", "links", n, "err", err)
		}
		keys = keys[n:]
	}
}

// TrackUse wraps a token service: each request counts in m's
// tokenbroker_token_requests_total by outcome, and marks its link used in
// u (unless no such link exists). Either may be nil.
func TrackUse(ts tokenbroker.TokenService, u *UseRecorder, m *Metrics) tokenbroker.TokenService {
	return &tracked{next: ts, uses: u, m: m}
}

type tracked struct {
	next tokenbroker.TokenService
	uses *UseRecorder
	m    *Metrics
}

func (t *tracked) Token(ctx context.Context, providerID, userID string, minValid time.Duration) (*tokenbroker.Token, error) {
	tok, err := t.next.Token(ctx, providerID, userID, minValid)
	outcome := requestOutcome(ctx, err)
	t.m.tokenRequest(outcome)
	if outcome != tokenbroker.ENOTFOUND && outcome != tokenbroker.EINVALID {
		t.uses.Touch(providerID, userID)
	}
	return tok, err
}

// requestOutcome is a token request's outcome: "ok", the error's code, or
// "canceled" for a caller that went away.
func requestOutcome(ctx context.Context, err error) string {
	switch {
	case err == nil:
		return "ok"
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		return "canceled"
	}
	return tokenbroker.ErrorCode(err)
}
