package sim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/refresh"
)

// incarnation is one process of a replica, from its start to its crash
// (or the end of the run): a production coordinator and its callers.
type incarnation struct {
	w     *World
	rep   int
	n     int
	name  string // r1.2: replica 1, second process
	owner string
	coord *refresh.Coordinator

	dead           bool
	diedAt         time.Time
	pausedUntil    time.Time
	pauseStep      int
	pauses         [][2]time.Time
	partitionUntil time.Time
	troubleUntil   time.Time // its database access was in trouble until then (see ledger.onAcquire)
	subs           map[int64]map[*subscriber]struct{}
	leases         map[int64]int64 // link -> epoch of its newest won lease
	closed         bool
}

type subscriber struct{ ch chan struct{} }

// trouble records that inc could not count on its database until t.
func (inc *incarnation) trouble(t time.Time) {
	if t.After(inc.troubleUntil) {
		inc.troubleUntil = t
	}
}

// jitter is the coordinator's Rand: deterministic whatever the order of
// the goroutines that draw in one step.
func (inc *incarnation) jitter() float64 {
	inc.w.mu.Lock()
	defer inc.w.mu.Unlock()
	return inc.w.jitter01(inc.name)
}

// pausedDuring is how long inc was paused within [from, to].
func (inc *incarnation) pausedDuring(from, to time.Time) time.Duration {
	var d time.Duration
	for _, p := range inc.pauses {
		s, e := maxTime(p[0], from), p[1]
		if to.Before(e) {
			e = to
		}
		if e.After(s) {
			d += e.Sub(s)
		}
	}
	return d
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// clock is an incarnation's refresh.Clock: the simulated time; a dead
// process's clock races ahead so that its goroutines wind down at once.
type clock struct {
	w   *World
	inc *incarnation
}

func (c *clock) Now() time.Time {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if c.inc.dead {
		return c.w.now.Add(1000 * time.Hour)
	}
	return c.w.now
}

func (c *clock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if c.inc.dead {
		ch <- c.w.now
		return ch
	}
	c.w.addTimer(&timer{at: c.w.now.Add(d), key: fmt.Sprintf("%s/after/%s", c.inc.name, d), inc: c.inc, ch: ch})
	return ch
}

func (c *clock) WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	sc := newSimCtx(ctx, c.w.now.Add(d), d, "timeout")
	if c.inc.dead {
		sc.end(context.DeadlineExceeded, true)
		return sc, func() {}
	}
	t := &timer{at: sc.deadline, key: fmt.Sprintf("%s/%s/timeout/%s", c.inc.name, callID(ctx), d), inc: c.inc, ctx: sc}
	c.w.addTimer(t)
	return sc, func() {
		if sc.end(context.Canceled, false) {
			c.w.mu.Lock()
			t.dead = true
			c.w.mu.Unlock()
		}
	}
}

// signaler is an incarnation's tokenbroker.Signaler: its in-process hub,
// fed by its own writes at once and by every writer's NOTIFY through the
// scheduler (delayed, dropped, or replaced by a wake-all on a listener
// reconnect).
type signaler struct {
	w   *World
	inc *incarnation
}

func (s *signaler) Subscribe(linkID int64) (<-chan struct{}, func()) {
	sub := &subscriber{ch: make(chan struct{}, 1)}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	if s.inc.dead {
		sub.ch <- struct{}{}
		return sub.ch, func() {}
	}
	m := s.inc.subs[linkID]
	if m == nil {
		m = map[*subscriber]struct{}{}
		s.inc.subs[linkID] = m
	}
	m[sub] = struct{}{}
	return sub.ch, func() {
		s.w.mu.Lock()
		defer s.w.mu.Unlock()
		delete(s.inc.subs[linkID], sub)
	}
}

// signal wakes inc's subscribers of link (0: all links).
func (inc *incarnation) signal(link int64) {
	for id, m := range inc.subs {
		if link != 0 && id != link {
			continue
		}
		for s := range m {
			select {
			case s.ch <- struct{}{}:
			default:
			}
		}
	}
}

// notify carries a write's signal: to the writer's own hub at once (when
// it learned of its write), and to every live process as a NOTIFY the
// scheduler delivers, late or never.
func (w *World) notify(from *incarnation, link int64, local bool) {
	if link == 0 {
		return
	}
	if local && from != nil && !from.dead {
		from.signal(link)
	}
	for _, incs := range w.reps {
		inc := incs[len(incs)-1]
		if inc.dead {
			continue
		}
		if w.chance(w.p.sigDrop) {
			w.logf("NOTIFY %s to %s dropped", w.linkName(link), inc.name)
			continue
		}
		d := w.between(0, 3*time.Millisecond)
		if w.chance(w.p.sigSlow) {
			d = w.between(100*time.Millisecond, 2*time.Second)
		}
		w.addEvent(w.now.Add(d), inc, fmt.Sprintf("notify:%s:%d", inc.name, link), func() {
			if !inc.dead {
				w.logf("NOTIFY %s reaches %s", w.linkName(link), inc.name)
				inc.signal(link)
			}
		})
	}
}

// caller is one client of an incarnation: a plan of Token calls.
type caller struct {
	id      string
	inc     *incarnation
	plan    []*call
	settle  bool
	done    bool
	results []*callResult
	checked int
}

type call struct {
	id       string
	at       time.Time
	link     *simLink
	minValid time.Duration
	timeout  time.Duration
}

type callResult struct {
	c          *call
	start, end time.Time
	deadline   time.Time
	tok        *tokenbroker.Token
	err        error
}

// setup draws the scenario: links, replicas, callers and faults.
func (w *World) setup() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range w.p.links {
		l := &simLink{user: fmt.Sprintf("u%d", i+1)}
		fam, tok := w.idp.grant(l.user, w.now)
		// Some links start with an expired token, so the first callers
		// herd at once.
		if w.chance(0.5) {
			tok.Expiry = w.now.Add(-time.Second)
			tok.IssuedAt = tok.Expiry.Add(-w.p.lifetime)
		}
		out, err := w.db.PutLink(w.now, &tokenbroker.Link{UserID: l.user, ProviderID: providerID, Token: tok}, tokenbroker.Record{})
		if err != nil {
			panic(err)
		}
		l.id, l.fam = out.ID, fam
		w.links = append(w.links, l)
		w.ck.onPut(w, out)
	}
	w.reps = make([][]*incarnation, w.p.replicas)
	for r := range w.p.replicas {
		w.startIncarnation(r)
	}
	w.scheduleFaults()
	w.addEvent(w.healAt, nil, "heal", w.heal)
}

func (w *World) current(rep int) *incarnation {
	incs := w.reps[rep]
	return incs[len(incs)-1]
}

// startIncarnation starts a process for replica rep with its callers.
func (w *World) startIncarnation(rep int) *incarnation {
	n := len(w.reps[rep]) + 1
	inc := &incarnation{w: w, rep: rep, n: n, name: fmt.Sprintf("r%d.%d", rep+1, n),
		subs: map[int64]map[*subscriber]struct{}{}, leases: map[int64]int64{}}
	inc.owner = fmt.Sprintf("replica-%d", rep+1)
	if !w.p.sameOwner {
		inc.owner = fmt.Sprintf("replica-%d-%d", rep+1, n)
	}
	cfg := w.coordConfig(inc)
	co, err := refresh.New(cfg)
	if err != nil {
		panic(err)
	}
	inc.coord = co
	w.reps[rep] = append(w.reps[rep], inc)
	if n > 1 {
		w.fig.Restarts++
	}
	w.logf("start %s (owner %s)", inc.name, inc.owner)
	if w.phase == 0 {
		for range w.p.callers {
			w.startCaller(inc, w.plan(), false)
		}
	}
	return inc
}

// plan draws a caller's calls from now to the heal.
func (w *World) plan() []*call {
	var calls []*call
	at := w.now
	for {
		think := w.exp(w.p.thinkMean)
		if w.chance(0.3) {
			// Callers that arrive on the same beat herd.
			think = think.Truncate(5 * time.Second)
		}
		at = at.Add(think)
		if !at.Before(w.healAt) {
			return calls
		}
		c := &call{at: at, link: w.links[w.rng.IntN(len(w.links))], timeout: w.between(time.Second, 40*time.Second)}
		switch r := w.rng.Float64(); {
		case r < 0.55:
		case r < 0.95:
			c.minValid = w.between(0, w.p.lifetime/2)
		default:
			c.minValid = w.between(w.p.lifetime/2, w.p.lifetime*2)
		}
		calls = append(calls, c)
	}
}

func (w *World) startCaller(inc *incarnation, plan []*call, settle bool) {
	c := &caller{id: fmt.Sprintf("c%d", len(w.callers)+1), inc: inc, plan: plan, settle: settle}
	for i, k := range plan {
		k.id = fmt.Sprintf("%s.%d", c.id, i+1)
	}
	w.callers = append(w.callers, c)
	go w.runCaller(c)
}

// runCaller is a caller's goroutine: its calls at their times.
func (w *World) runCaller(c *caller) {
	defer func() {
		w.mu.Lock()
		c.done = true
		w.mu.Unlock()
	}()
	for i := 0; i < len(c.plan); i++ {
		k := c.plan[i]
		if !w.sleepUntil(c, k.at) {
			return
		}
		w.mu.Lock()
		start := w.now
		deadline := start.Add(k.timeout)
		ctx := newSimCtx(context.WithValue(context.Background(), callKey{}, k.id), deadline, k.timeout, "caller")
		w.addTimer(&timer{at: deadline, key: c.inc.name + "/" + k.id + "/deadline", inc: c.inc, ctx: ctx})
		w.mu.Unlock()

		tok, err := c.inc.coord.Token(ctx, providerID, k.link.user, k.minValid)

		w.mu.Lock()
		ctx.end(context.Canceled, false)
		r := &callResult{c: k, start: start, end: w.now, deadline: deadline, tok: tok, err: err}
		c.results = append(c.results, r)
		dead := c.inc.dead
		if c.settle && !dead && !definitive(r) && len(c.plan) < 200 {
			// A settling caller asks again until it has a definite answer.
			next := &call{id: fmt.Sprintf("%s.%d", c.id, len(c.plan)+1), at: w.now.Add(time.Duration(2+int(w.jitter01(k.id)*10)) * time.Second),
				link: k.link, timeout: 30 * time.Second}
			c.plan = append(c.plan, next)
		}
		w.mu.Unlock()
		if dead {
			return
		}
	}
}

// definitive reports whether a settling caller is done: it has a token or
// the link needs its user.
func definitive(r *callResult) bool {
	return r.err == nil || errors.Is(r.err, tokenbroker.ErrReauthRequired)
}

// sleepUntil waits on the simulated clock; false if the process died.
func (w *World) sleepUntil(c *caller, at time.Time) bool {
	w.mu.Lock()
	if c.inc.dead {
		w.mu.Unlock()
		return false
	}
	if !at.After(w.now) {
		w.mu.Unlock()
		return true
	}
	ch := make(chan time.Time, 1)
	w.addTimer(&timer{at: at, key: c.inc.name + "/" + c.id + "/sleep", inc: c.inc, ch: ch})
	w.mu.Unlock()
	<-ch
	w.mu.Lock()
	defer w.mu.Unlock()
	return !c.inc.dead
}

// crash kills an incarnation: nothing it does has an effect any more.
// Requests it had sent may still reach the provider or the database; its
// goroutines are woken to wind down against a world that refuses them.
func (w *World) crash(inc *incarnation, why string) {
	if inc.dead {
		return
	}
	inc.dead, inc.diedAt = true, w.now
	w.fig.Crashes++
	w.logf("CRASH %s %s", inc.name, why)
	keys := make([]string, 0)
	for k, o := range w.ops {
		if o.inc == inc {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		o := w.ops[k]
		if o.kind == kindRefresh {
			// The request stays on the wire (its arrival event); the
			// answer has nobody to go to.
			w.deliver(o, opResult{err: &tokenbroker.ProviderError{ProviderID: providerID, Class: tokenbroker.FailureNotProcessed, Err: errDead}})
			continue
		}
		if o.seen && o.orphan && o.fate != "fail" {
			o.abandoned, o.abandonedAt = true, w.now
			w.deliver(o, opResult{err: &tokenbroker.StoreUnavailableError{Op: o.kind, Err: errDead}})
			continue // applied at its time: it was sent
		}
		delete(w.ops, k)
		w.deliver(o, opResult{err: &tokenbroker.StoreUnavailableError{Op: o.kind, Err: errDead}})
	}
	for _, t := range w.timers {
		if t.inc == inc {
			w.fireTimer(t)
		}
	}
	w.compactTimers()
	inc.signal(0)
	if w.phase == 0 && w.p.crashEvery > 0 {
		w.addEvent(w.now.Add(w.between(0, 30*time.Second)), nil, "restart:"+inc.name, func() {
			if w.phase == 0 && w.current(inc.rep) == inc {
				w.startIncarnation(inc.rep)
			}
		})
	}
}

func (w *World) deliver(o *op, r opResult) {
	if o.resolved {
		return
	}
	o.resolved = true
	o.res <- r
}

// scheduleFaults draws the run's fault episodes.
func (w *World) scheduleFaults() {
	p := &w.p
	every := func(mean time.Duration, name string, fn func()) {
		if mean <= 0 {
			return
		}
		for at := w.now.Add(w.exp(mean)); at.Before(w.healAt); at = at.Add(w.exp(mean)) {
			w.addEvent(at, nil, name, fn)
		}
	}
	every(p.crashEvery, "crash", func() {
		inc := w.current(w.rng.IntN(len(w.reps)))
		w.crash(inc, "(scheduled)")
	})
	every(p.pauseEvery, "pause", func() {
		w.pause(w.current(w.rng.IntN(len(w.reps))), "")
	})
	every(p.dbOutageEvery, "db-outage", func() {
		d := w.between(time.Second, 30*time.Second)
		switch w.rng.IntN(3) {
		case 0:
			w.dbDownUntil = w.now.Add(d)
			w.logf("DATABASE DOWN for %s", d.Round(time.Millisecond))
		case 1:
			w.dbHaltUntil = w.now.Add(d)
			w.logf("DATABASE HALTED for %s", d.Round(time.Millisecond))
		default:
			inc := w.current(w.rng.IntN(len(w.reps)))
			inc.partitionUntil = w.now.Add(d)
			inc.trouble(inc.partitionUntil)
			w.logf("PARTITION %s from the database for %s", inc.name, d.Round(time.Millisecond))
			return
		}
		for _, incs := range w.reps {
			incs[len(incs)-1].trouble(w.now.Add(d))
		}
	})
	every(p.provOutageEvery, "provider-outage", func() {
		d := w.between(time.Second, 40*time.Second)
		w.provDown.until = w.now.Add(d)
		w.provDown.kind = []string{"503", "refuse", "hang", "5xxBefore"}[w.rng.IntN(4)]
		w.logf("PROVIDER OUTAGE (%s) for %s", w.provDown.kind, d.Round(time.Millisecond))
	})
	every(p.misconfigEvery, "misconfig", func() {
		d := w.between(time.Second, 90*time.Second)
		w.misconfigUntil = w.now.Add(d)
		w.logf("PROVIDER REFUSES THE CLIENT for %s", d.Round(time.Millisecond))
	})
	every(p.listenerResetEvery, "listener", func() {
		inc := w.current(w.rng.IntN(len(w.reps)))
		if inc.dead {
			return
		}
		w.addEvent(w.now, inc, "listener-reset:"+inc.name, func() {
			if !inc.dead {
				w.logf("LISTENER of %s reconnects: every subscriber woken", inc.name)
				inc.signal(0)
			}
		})
	})
	every(p.reconnectEvery, "reconnect", func() {
		l := w.links[w.rng.IntN(len(w.links))]
		fam, tok := w.idp.grant(l.user, w.now)
		out, err := w.db.PutLink(w.now, &tokenbroker.Link{UserID: l.user, ProviderID: providerID, Token: tok},
			tokenbroker.Record{Audit: []tokenbroker.AuditEvent{{Action: tokenbroker.AuditLinkCreate, UserID: l.user, ProviderID: providerID}}})
		if err != nil {
			panic(err)
		}
		l.fam = fam
		w.fig.Reconnects++
		w.logf("RECONNECT %s: new grant f%d, gen %d", l.user, fam.id, out.Generation)
		w.ck.onPut(w, out)
		w.notify(nil, out.ID, false)
	})
	every(p.revokeEvery, "revoke", func() {
		l := w.links[w.rng.IntN(len(w.links))]
		if l.fam.revoked == "" {
			l.fam.revoked = "user"
			w.logf("USER REVOKES %s's grant f%d at the provider", l.user, l.fam.id)
		}
	})
}

// pause freezes inc (a stop-the-world pause, a starved or stopped
// process) for a while: its statements already sent are applied, but it
// receives no answer, timer or signal until the pause ends.
func (w *World) pause(inc *incarnation, why string) {
	if inc.dead || w.held(inc) {
		return
	}
	d := w.between(100*time.Millisecond, 5*time.Second)
	if w.chance(0.5) {
		d = w.between(w.cfg.LeaseTTL+w.cfg.Grace, 25*time.Second) // past its lease
	}
	inc.pausedUntil, inc.pauseStep = w.now.Add(d), w.step+1
	inc.pauses = append(inc.pauses, [2]time.Time{w.now, inc.pausedUntil})
	inc.trouble(inc.pausedUntil)
	w.fig.Pauses++
	w.logf("PAUSE %s for %s%s", inc.name, d.Round(time.Millisecond), why)
}

// heal ends the faults and starts the settling: every replica runs, and
// one caller per link asks until it has a definite answer.
func (w *World) heal() {
	w.phase = 1
	w.logf("HEAL: faults end; settling")
	w.dbDownUntil, w.dbHaltUntil, w.misconfigUntil = time.Time{}, time.Time{}, time.Time{}
	w.provDown.until = time.Time{}
	w.p.dbFail, w.p.dbFailAfter, w.p.dbSlow, w.p.dbHang = 0, 0, 0, 0
	w.p.provRefuse, w.p.prov503, w.p.prov5xxBefore = 0, 0, 0
	w.p.provReset, w.p.prov5xxAfter, w.p.provHang, w.p.provSlow, w.p.netDegrade = 0, 0, 0, 0, 0
	w.p.sigDrop, w.p.sigSlow, w.p.crashAtStep, w.p.pauseAtStep = 0, 0, 0, 0
	var live []*incarnation
	for r := range w.reps {
		inc := w.current(r)
		if inc.dead {
			inc = w.startIncarnation(r)
		}
		inc.pausedUntil, inc.partitionUntil = time.Time{}, time.Time{}
		live = append(live, inc)
	}
	// Long enough for every token to expire and every backoff and circuit
	// to end, so each link is refreshed once more: a lost refresh that
	// nobody met yet shows now.
	at := w.now.Add(w.p.lifetime + 6*time.Minute)
	for _, l := range w.links {
		inc := live[w.rng.IntN(len(live))]
		w.startCaller(inc, []*call{{at: at, link: l, timeout: 30 * time.Second}}, true)
	}
}

// afterStep checks the invariants after a step and moves the run through
// its phases.
func (w *World) afterStep() {
	w.seeOps()
	ab := w.ck.abandoned
	w.ck.abandoned = nil
	sortOps(ab)
	for _, o := range ab {
		w.ck.onAbandon(w, o)
	}
	if len(w.dupKeys) > 0 {
		w.fail("determinism", "two operations with the same key %v: their order would depend on Go's scheduler", w.dupKeys)
		w.dupKeys = nil
	}
	w.ck.checkCalls(w)
	switch w.phase {
	case 1:
		for _, c := range w.callers {
			if !c.done {
				return
			}
		}
		w.ck.final(w)
		w.phase = 2
		w.logf("CLOSE: every process shuts down")
		for _, incs := range w.reps {
			inc := incs[len(incs)-1]
			if inc.dead {
				continue
			}
			w.closers++
			go func() {
				inc.coord.Close()
				w.mu.Lock()
				inc.closed = true
				w.closers--
				w.mu.Unlock()
			}()
		}
	case 2:
		if w.closers == 0 {
			for _, o := range w.ops {
				if !o.resolved && !o.abandoned {
					w.fail("I6", "operation %s still open after every process closed", o.key)
				}
			}
			w.phase = 3
		}
	}
}

// abort ends a failed run: every process dies, so that its goroutines end.
func (w *World) abort() {
	if w.phase >= 2 {
		return
	}
	w.logf("ABORT")
	w.phase = 2
	for _, incs := range w.reps {
		w.crash(incs[len(incs)-1], "(abort)")
	}
	for _, t := range w.timers {
		w.fireTimer(t)
	}
	w.compactTimers()
	w.events = nil
	for _, o := range w.ops {
		w.deliver(o, opResult{err: errDead})
	}
	w.ops = map[string]*op{}
}
