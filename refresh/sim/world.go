package sim

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing/synctest"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/refresh"
)

const providerID = "idp"

// Options configure one run. The zero value (but a seed) is the normal
// run: everything else is drawn from the seed.
type Options struct {
	Seed int64
	// Broken removes mechanisms of the simulated store (the simulation's
	// own test).
	Broken Breakage
	// MaxSteps bounds the run (default 200000); a run that does not end
	// within it is a liveness failure.
	MaxSteps int
	// Log, if set, receives every line of the schedule as it is made.
	Log io.Writer
}

// Result is what a run found.
type Result struct {
	Seed      int64
	Violation string   // the first broken invariant, "" when none
	Schedule  []string // the readable schedule, coordinator log lines included
	Hash      uint64   // a hash of the scheduler's decisions and their outcomes
	Profile   string
	Figures   Figures
}

// Figures count what happened in a run.
type Figures struct {
	Steps, Calls, Tokens         int
	Errors                       map[string]int
	ProviderSends, Processed     int
	Rotations, Takeovers         int
	Crashes, Pauses, Restarts    int
	Losses                       map[string]int // by cause: families revoked by a re-sent spent token
	LostMarks, RevokedMarks      int
	UncertainAnswers, Reconnects int
}

// params is the world a seed draws: its size, its workload and its fault
// rates.
type params struct {
	profile      string
	replicas     int
	links        int
	callers      int
	duration     time.Duration
	lifetime     time.Duration
	refreshAhead time.Duration
	thinkMean    time.Duration
	sameOwner    bool // a restarted replica keeps its lease owner id

	dbFail, dbFailAfter, dbSlow, dbHang float64
	provRefuse, prov503, prov5xxBefore  float64
	provReset, prov5xxAfter, provHang   float64
	provSlow                            float64
	netDegrade                          float64 // per request sent, its sender's network degrades (see seeRefresh)
	sigDrop, sigSlow                    float64
	crashAtStep                         float64 // per step, crash the replica whose event it is
	pauseAtStep                         float64 // per step, pause it
	crashEvery, pauseEvery              time.Duration
	dbOutageEvery, provOutageEvery      time.Duration
	reconnectEvery, revokeEvery         time.Duration
	misconfigEvery, listenerResetEvery  time.Duration
}

func drawParams(r *rand.Rand) params {
	p := params{
		replicas: 2 + r.IntN(3), links: 1 + r.IntN(3), callers: 1 + r.IntN(3),
		duration:     time.Duration(3+r.IntN(6)) * time.Minute,
		lifetime:     []time.Duration{45 * time.Second, 90 * time.Second, 3 * time.Minute, 5 * time.Minute}[r.IntN(4)],
		refreshAhead: []time.Duration{10 * time.Second, 30 * time.Second, time.Minute}[r.IntN(3)],
		thinkMean:    time.Duration(5+r.IntN(40)) * time.Second,
		sameOwner:    r.IntN(2) == 0,
	}
	switch k := r.IntN(10); {
	case k < 2:
		p.profile = "calm"
	case k < 5:
		p.profile = "flaky"
		p.dbFail, p.dbFailAfter, p.dbSlow, p.dbHang = 0.02, 0.01, 0.05, 0.003
		p.provRefuse, p.prov503, p.prov5xxBefore = 0.03, 0.03, 0.02
		p.provReset, p.prov5xxAfter, p.provHang, p.provSlow = 0.04, 0.03, 0.01, 0.05
		p.netDegrade = 0.04
		p.sigDrop, p.sigSlow = 0.1, 0.1
		p.crashAtStep, p.pauseAtStep = 0.002, 0.002
		p.crashEvery, p.pauseEvery = 2*time.Minute, 2*time.Minute
		p.reconnectEvery, p.revokeEvery = 6*time.Minute, 10*time.Minute
		p.listenerResetEvery = 3 * time.Minute
	case k < 8:
		p.profile = "stormy"
		p.dbFail, p.dbFailAfter, p.dbSlow, p.dbHang = 0.05, 0.03, 0.1, 0.01
		p.provRefuse, p.prov503, p.prov5xxBefore = 0.05, 0.05, 0.05
		p.provReset, p.prov5xxAfter, p.provHang, p.provSlow = 0.08, 0.05, 0.03, 0.1
		p.netDegrade = 0.1
		p.sigDrop, p.sigSlow = 0.3, 0.2
		p.crashAtStep, p.pauseAtStep = 0.006, 0.006
		p.crashEvery, p.pauseEvery = time.Minute, time.Minute
		p.dbOutageEvery, p.provOutageEvery = 3*time.Minute, 3*time.Minute
		p.reconnectEvery, p.revokeEvery, p.misconfigEvery = 4*time.Minute, 8*time.Minute, 8*time.Minute
		p.listenerResetEvery = 2 * time.Minute
	default:
		p.profile = "outages"
		p.dbFail, p.dbSlow = 0.01, 0.03
		p.provReset, p.provSlow = 0.02, 0.03
		p.sigDrop = 0.05
		p.crashAtStep, p.pauseAtStep = 0.001, 0.001
		p.crashEvery, p.pauseEvery = 3*time.Minute, 3*time.Minute
		p.dbOutageEvery, p.provOutageEvery, p.misconfigEvery = time.Minute, time.Minute, 5*time.Minute
	}
	return p
}

// World is one simulated run.
type World struct {
	opts Options
	seed int64
	rng  *rand.Rand // the scheduler's; only the scheduler goroutine draws
	p    params
	cfg  refresh.Config // the coordinators' defaults, for the checks

	// mu guards everything below that goroutines of the bubble touch:
	// registrations of operations, timers and subscriptions, the
	// incarnations' life, the callers' results, and the log. The
	// scheduler holds it while it applies an event.
	mu      sync.Mutex
	now     time.Time
	step    int
	ops     map[string]*op
	timers  []*timer
	tseq    int
	dupKeys []string
	logs    []string // coordinator log lines of the current step

	db        *DB
	idp       *idp
	reps      [][]*incarnation // replica -> incarnations, last is current
	links     []*simLink
	callers   []*caller
	events    []*event
	eseq      int
	opSeq     int
	schedule  []string
	hash      uint64
	violation string
	fig       Figures

	ck ledger

	phase       int // 0 run, 1 settle, 2 closing, 3 done
	start       time.Time
	healAt      time.Time
	closers     int
	dbDownUntil time.Time
	dbHaltUntil time.Time
	provDown    struct {
		until time.Time
		kind  string
	}
	misconfigUntil time.Time
}

// simLink is one user's link as the scenario knows it.
type simLink struct {
	user string
	id   int64
	fam  *family
}

// event is one of the scheduler's own events.
type event struct {
	at  time.Time
	key string
	inc *incarnation // held while inc is paused; nil for none
	fn  func()
}

// timer is a wait of a goroutine of the bubble on the simulated clock.
type timer struct {
	at    time.Time
	key   string
	seq   int
	inc   *incarnation
	ch    chan time.Time // After
	ctx   *simCtx        // WithTimeout or a caller's deadline
	dead  bool
	onEnd func() // scheduler-side bookkeeping when it fires
}

// Run simulates one seed. It must be called inside a synctest bubble
// (synctest.Test) and returns when every goroutine it started has ended.
func Run(o Options) *Result {
	w := &World{opts: o, seed: o.Seed, ops: map[string]*op{}, db: NewDB()}
	w.db.Broken = o.Broken
	w.rng = rand.New(rand.NewPCG(uint64(o.Seed), 0x7ab1e5eed))
	w.p = drawParams(w.rng)
	w.now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w.start = w.now
	w.healAt = w.now.Add(w.p.duration)
	w.idp = newIDP(w.p.lifetime)
	w.ck.init()
	w.fig.Errors, w.fig.Losses = map[string]int{}, map[string]int{}
	if o.MaxSteps == 0 {
		o.MaxSteps = 200000
	}
	w.hash = 14695981039346656037
	w.cfg = w.coordConfig(nil)
	w.logf("seed %d: profile %s, %d replicas, %d links, %d callers each, %s, token lifetime %s, refresh ahead %s",
		o.Seed, w.p.profile, w.p.replicas, w.p.links, w.p.callers, w.p.duration, w.p.lifetime, w.p.refreshAhead)

	w.setup()
	for w.phase < 3 {
		synctest.Wait()
		w.mu.Lock()
		w.flushLogs()
		w.afterStep()
		if w.violation != "" && w.phase < 2 {
			w.abort()
		}
		if w.step >= o.MaxSteps && w.violation == "" {
			w.fail("liveness", "the run did not end within %d steps", o.MaxSteps)
			w.abort()
		}
		w.advance()
		w.mu.Unlock()
	}
	synctest.Wait()
	w.mu.Lock()
	w.flushLogs()
	w.mu.Unlock()
	w.fig.Steps = w.step
	return &Result{Seed: o.Seed, Violation: w.violation, Schedule: w.schedule, Hash: w.hash, Profile: w.p.profile, Figures: w.fig}
}

// coordConfig is the production configuration (the defaults), with the
// simulation's clock, store, provider and signals for inc.
func (w *World) coordConfig(inc *incarnation) refresh.Config {
	cfg := refresh.Config{}
	if inc != nil {
		cfg = refresh.Config{
			Store: &storeView{w: w, inc: inc}, Signaler: &signaler{w: w, inc: inc}, Providers: providers{&providerView{w: w, inc: inc}},
			Owner: inc.owner, Clock: &clock{w: w, inc: inc}, Rand: inc.jitter,
			Logger: slog.New(slog.NewTextHandler(&logWriter{w: w, inc: inc}, &slog.HandlerOptions{
				Level: slog.LevelInfo,
				ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
					if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == "component" || a.Key == "owner") {
						return slog.Attr{}
					}
					return a
				},
			})),
			Auditor: tokenbroker.AuditorFunc(func(tokenbroker.AuditEvent) {}),
		}
	}
	// The production defaults, spelled out for the checks.
	cfg.LeaseTTL, cfg.Grace, cfg.ProviderTimeout = refresh.DefaultLeaseTTL, refresh.DefaultGrace, refresh.DefaultProviderTimeout
	cfg.UncertainBackoff, cfg.CommitRetryInterval = refresh.DefaultUncertainBackoff, refresh.DefaultCommitRetryInterval
	cfg.RenewEvery = cfg.LeaseTTL / 3
	return cfg
}

// logf appends a line to the schedule (and the hash).
func (w *World) logf(format string, args ...any) {
	line := fmt.Sprintf("%8.3fs #%-5d ", w.now.Sub(w.start).Seconds(), w.step) + fmt.Sprintf(format, args...)
	w.schedule = append(w.schedule, line)
	h := fnv.New64a()
	fmt.Fprintf(h, "%d|%s", w.hash, line)
	w.hash = h.Sum64()
	if w.opts.Log != nil {
		fmt.Fprintln(w.opts.Log, line)
	}
}

// flushLogs moves the coordinators' log lines of the last step into the
// schedule, sorted (goroutines woken by one step log in any order), out
// of the hash.
func (w *World) flushLogs() {
	if len(w.logs) == 0 {
		return
	}
	sort.Strings(w.logs)
	for _, l := range w.logs {
		line := fmt.Sprintf("%8.3fs        %s", w.now.Sub(w.start).Seconds(), l)
		w.schedule = append(w.schedule, line)
		if w.opts.Log != nil {
			fmt.Fprintln(w.opts.Log, line)
		}
	}
	w.logs = w.logs[:0]
}

type logWriter struct {
	w   *World
	inc *incarnation
}

func (l *logWriter) Write(p []byte) (int, error) {
	l.w.mu.Lock()
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		l.w.logs = append(l.w.logs, "  "+l.inc.name+" log: "+line)
	}
	l.w.mu.Unlock()
	return len(p), nil
}

// fail records the first violation of an invariant.
func (w *World) fail(inv, format string, args ...any) {
	if w.violation != "" {
		return
	}
	w.violation = inv + ": " + fmt.Sprintf(format, args...)
	w.logf("VIOLATION %s", w.violation)
}

// addEvent schedules one of the scheduler's own events.
func (w *World) addEvent(at time.Time, inc *incarnation, name string, fn func()) {
	w.eseq++
	w.events = append(w.events, &event{at: at, key: fmt.Sprintf("ev:%07d:%s", w.eseq, name), inc: inc, fn: fn})
}

// held reports whether inc's events wait for the end of its pause.
func (w *World) held(inc *incarnation) bool {
	return inc != nil && !inc.dead && w.now.Before(inc.pausedUntil)
}

type cand struct {
	key string
	run func()
}

// advance chooses and runs the next step: one due event among the
// operations, timers and the scheduler's events, at random in key order;
// with none due, the clock moves to the next one.
func (w *World) advance() {
	for {
		var cs []cand
		next := time.Time{}
		// due reports whether something at at, held until hold, is due;
		// it keeps the earliest future time in next.
		due := func(at, hold time.Time) bool {
			if hold.After(at) {
				at = hold
			}
			if !at.After(w.now) {
				return true
			}
			if next.IsZero() || at.Before(next) {
				next = at
			}
			return false
		}
		hold := func(inc *incarnation) time.Time {
			if w.held(inc) {
				return inc.pausedUntil
			}
			return time.Time{}
		}
		for _, o := range w.ops {
			if o.kind == kindRefresh || !o.seen {
				continue
			}
			h := hold(o.inc)
			if !o.applied && o.issuedStep < o.inc.pauseStep {
				h = time.Time{} // sent before the pause: the database applies it
			}
			if due(o.readyAt, h) {
				cs = append(cs, cand{"op:" + o.key, func() { w.releaseOp(o) }})
			}
		}
		groups := map[string][]*timer{}
		for _, t := range w.timers {
			if !t.dead && due(t.at, hold(t.inc)) {
				k := fmt.Sprintf("tm:%s@%d", t.key, t.at.UnixNano())
				groups[k] = append(groups[k], t)
			}
		}
		for k, ts := range groups {
			cs = append(cs, cand{k, func() { w.fireTimers(ts) }})
		}
		for _, e := range w.events {
			if due(e.at, hold(e.inc)) {
				cs = append(cs, cand{e.key, func() { w.removeEvent(e); e.fn() }})
			}
		}
		if len(cs) == 0 {
			if next.IsZero() {
				if w.phase < 3 {
					w.fail("liveness", "every goroutine is blocked and nothing is scheduled (deadlock)")
					w.abort()
					if w.phase == 2 && w.closers == 0 {
						w.phase = 3
					}
					return
				}
				return
			}
			w.now = next
			continue
		}
		sort.Slice(cs, func(i, j int) bool { return cs[i].key < cs[j].key })
		c := cs[w.rng.IntN(len(cs))]
		w.step++
		c.run()
		return
	}
}

func (w *World) removeEvent(e *event) {
	if i := slices.Index(w.events, e); i >= 0 {
		w.events = slices.Delete(w.events, i, i+1)
	}
}

// fireTimers fires a group of timers due at the same time with the same
// key: goroutines that registered them in one step, in an order the
// scheduler cannot know, are woken together.
func (w *World) fireTimers(ts []*timer) {
	for _, t := range ts {
		w.fireTimer(t)
	}
	w.compactTimers()
}

func (w *World) fireTimer(t *timer) {
	if t.dead {
		return
	}
	t.dead = true
	if t.onEnd != nil {
		t.onEnd()
	}
	switch {
	case t.ch != nil:
		t.ch <- w.now
	case t.ctx != nil:
		if t.ctx.end(context.DeadlineExceeded, true) && t.ctx.origin == "caller" {
			w.logf("%s deadline of %s", t.inc.name, t.key)
		}
	}
}

func (w *World) compactTimers() {
	w.timers = slices.DeleteFunc(w.timers, func(t *timer) bool { return t.dead })
}

// addTimer registers a timer (called by goroutines of the bubble, under
// mu).
func (w *World) addTimer(t *timer) {
	w.tseq++
	t.seq = w.tseq
	w.timers = append(w.timers, t)
}

// jitter01 is a deterministic draw in [0,1) for key at the current step,
// the same whichever goroutine of a step asks first.
func (w *World) jitter01(key string) float64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d|%d|%d|%s", w.seed, w.step, w.now.UnixNano(), key)
	return float64(h.Sum64()>>11) / (1 << 53)
}

func (w *World) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(w.rng.Int64N(int64(hi-lo)))
}

func (w *World) chance(p float64) bool { return p > 0 && w.rng.Float64() < p }

// exp draws an exponential wait with the given mean (0: never).
func (w *World) exp(mean time.Duration) time.Duration {
	if mean <= 0 {
		return 0
	}
	return time.Duration(w.rng.ExpFloat64() * float64(mean))
}
