package sim

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

const kindRefresh = "Refresh"

// op is one blocking call of a coordinator into the simulated world: a
// database statement or a provider request. The calling goroutine waits
// for the scheduler (or its context).
type op struct {
	key        string
	inc        *incarnation
	kind       string
	call       string // the caller's call it serves
	ctx        context.Context
	issued     time.Time
	issuedStep int
	res        chan opResult

	// A statement: apply runs it on the database at the step that
	// releases it and returns the link to signal (0: none).
	apply func(now time.Time) (v any, signal int64, err error)
	desc  string

	// A provider request.
	rt string

	seen        bool
	readyAt     time.Time
	fate        string // "ok", "fail", "failAfter"
	orphan      bool   // applied even if the caller gives up first (it was sent)
	abandoned   bool
	abandonedAt time.Time
	abandonWhy  string // "timeout" (the coordinator's own timeout), "cancel"
	resolved    bool
	applied     bool // applied while its process was paused; result waits
	result      opResult
	proc        *processing
	answer      answerFate
}

type opResult struct {
	v   any
	err error
}

// answerFate is what becomes of a provider request.
type answerFate struct {
	kind       string // refuse, 503, client, 5xxBefore, sent
	arriveIn   time.Duration
	answerIn   time.Duration
	answer     string // deliver, reset, 5xxAfter, hang
	retryAfter time.Duration
}

var errDead = errors.New("sim: the process has died")

// register adds o and waits for its result or its context. Called by a
// goroutine of the bubble.
func (w *World) register(o *op) (any, error) {
	w.mu.Lock()
	if o.inc.dead {
		w.mu.Unlock()
		if o.kind == kindRefresh {
			return nil, &tokenbroker.ProviderError{ProviderID: providerID, Class: tokenbroker.FailureNotProcessed, Err: errDead}
		}
		return nil, &tokenbroker.StoreUnavailableError{Op: o.kind, Err: errDead}
	}
	o.call = callID(o.ctx)
	o.key = fmt.Sprintf("%s/%s/%s", o.inc.name, o.call, o.kind)
	if _, dup := w.ops[o.key]; dup {
		w.dupKeys = append(w.dupKeys, o.key)
		w.opSeq++
		o.key = fmt.Sprintf("%s#%d", o.key, w.opSeq)
	}
	o.issued, o.issuedStep = w.now, w.step
	o.res = make(chan opResult, 1)
	w.ops[o.key] = o
	w.mu.Unlock()
	select {
	case r := <-o.res:
		return r.v, r.err
	case <-o.ctx.Done():
	}
	// A result of the same step wins over the context, whichever select
	// saw first: the scheduler delivers under mu, before it lets go of
	// the step.
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case r := <-o.res:
		return r.v, r.err
	default:
	}
	o.abandoned, o.abandonedAt, o.resolved = true, w.now, true
	o.abandonWhy = "cancel"
	if c := nearestSimCtx(o.ctx); c != nil && c.origin == "timeout" && c.endedByOwnDeadline() {
		o.abandonWhy = "timeout"
	}
	// The scheduler accounts for it after the step, in key order.
	w.ck.abandoned = append(w.ck.abandoned, o)
	if o.kind == kindRefresh {
		delete(w.ops, o.key) // its arrival and answer events go on
		// As provider.Refresh classifies it: the request was written, the
		// answer did not come in time.
		return nil, &tokenbroker.ProviderError{ProviderID: providerID, Class: tokenbroker.FailureUncertain, Err: o.ctx.Err()}
	}
	delete(w.ops, o.key)
	if o.seen && o.orphan {
		// Sent: the database still applies it, under a key of its own.
		o.key = fmt.Sprintf("%s~orphan@%d", o.key, w.step)
		w.ops[o.key] = o
	}
	return nil, fmt.Errorf("sim db: %s: %w", o.kind, o.ctx.Err())
}

// seeOps draws the fate of the operations registered during the last
// step, in key order.
func (w *World) seeOps() {
	var fresh []*op
	for _, o := range w.ops {
		if !o.seen {
			fresh = append(fresh, o)
		}
	}
	sortOps(fresh)
	for _, o := range fresh {
		o.seen = true
		if o.kind == kindRefresh {
			w.seeRefresh(o)
			continue
		}
		w.seeStatement(o)
	}
}

func sortOps(os []*op) {
	for i := 1; i < len(os); i++ {
		for j := i; j > 0 && os[j].key < os[j-1].key; j-- {
			os[j], os[j-1] = os[j-1], os[j]
		}
	}
}

// seeStatement draws a statement's latency and fault.
func (w *World) seeStatement(o *op) {
	p := &w.p
	lat := w.dbLatency()
	o.fate = "ok"
	o.orphan = w.chance(0.5)
	inc := o.inc
	switch {
	case w.now.Before(w.dbDownUntil) || w.now.Before(inc.partitionUntil):
		o.fate, lat = "fail", w.between(0, 5*time.Millisecond)
		o.orphan = false
	case w.now.Before(w.dbHaltUntil):
		lat = w.dbHaltUntil.Sub(w.now) + lat // it hangs until the database resumes
	case w.chance(p.dbFail):
		o.fate = "fail"
		o.orphan = false
	case o.kind != "GetLink" && o.kind != "GetProviderHealth" && w.chance(p.dbFailAfter):
		o.fate = "failAfter" // applied, and the answer lost with the connection
	case w.chance(p.dbHang):
		lat = w.between(5*time.Second, 40*time.Second)
	case w.chance(p.dbSlow):
		lat = w.between(500*time.Millisecond, 3*time.Second)
	}
	o.readyAt = w.now.Add(lat)
	if o.fate != "ok" || lat > w.cfg.RenewEvery/2 {
		inc.trouble(o.readyAt)
	}
	if o.abandoned {
		delete(w.ops, o.key) // its context ended before it was sent
	}
}

func (w *World) dbLatency() time.Duration {
	switch r := w.rng.Float64(); {
	case r < 0.35:
		return 0
	case r < 0.8:
		return w.between(0, 5*time.Millisecond)
	case r < 0.97:
		return w.between(5*time.Millisecond, 100*time.Millisecond)
	default:
		return w.between(100*time.Millisecond, 800*time.Millisecond)
	}
}

// releaseOp runs a statement whose time has come: on the database, and
// its answer (or error) to the goroutine that waits. A statement of a
// paused process that was sent before the pause is applied on time; its
// answer waits for the end of the pause.
func (w *World) releaseOp(o *op) {
	if o.applied {
		delete(w.ops, o.key)
		w.logf("%s receives the answer of %s after its pause", o.inc.name, o.desc)
		w.deliver(o, o.result)
		return
	}
	if o.abandoned {
		delete(w.ops, o.key)
		// Its caller gave up (or died): whatever it changed, nobody in the
		// process knows (a lease won this way is orphaned until it
		// expires).
		o.inc.trouble(w.now)
		v, sig, err := o.apply(w.now)
		w.logf("%s %s applied after its caller gave up -> %s", o.inc.name, o.desc, describe(v, err))
		w.notify(o.inc, sig, false)
		return
	}
	if o.fate == "fail" {
		delete(w.ops, o.key)
		w.logf("%s %s fails: connection refused", o.inc.name, o.desc)
		w.deliver(o, opResult{err: &tokenbroker.StoreUnavailableError{Op: o.kind, Err: errors.New("sim: connection refused")}})
		return
	}
	if w.chance(w.p.crashAtStep) {
		// The process dies with the statement in flight: the database may
		// still have applied it.
		delete(w.ops, o.key)
		if o.orphan {
			v, sig, err := o.apply(w.now)
			w.logf("%s %s applied -> %s", o.inc.name, o.desc, describe(v, err))
			w.notify(o.inc, sig, false)
		}
		w.crash(o.inc, "with "+o.kind+" in flight")
		w.deliver(o, opResult{err: &tokenbroker.StoreUnavailableError{Op: o.kind, Err: errDead}})
		return
	}
	if w.chance(w.p.pauseAtStep) {
		w.pause(o.inc, " with the answer of "+o.kind+" on its way")
	}
	v, sig, err := o.apply(w.now)
	r := opResult{v: v, err: err}
	if o.fate == "failAfter" {
		w.logf("%s %s applied -> %s, answer lost: connection reset", o.inc.name, o.desc, describe(v, err))
		w.notify(o.inc, sig, false)
		r = opResult{err: &tokenbroker.StoreUnavailableError{Op: o.kind, Err: errors.New("sim: connection reset after the statement")}}
	} else {
		w.logf("%s %s -> %s", o.inc.name, o.desc, describe(v, err))
		w.notify(o.inc, sig, err == nil && !w.held(o.inc))
	}
	if w.held(o.inc) {
		o.applied, o.result = true, r
		return
	}
	delete(w.ops, o.key)
	w.deliver(o, r)
}

func describe(v any, err error) string {
	if err != nil {
		return "error " + err.Error()
	}
	switch v := v.(type) {
	case *tokenbroker.Link:
		s := fmt.Sprintf("gen %d %s rt=%s", v.Generation, v.State, v.Token.RefreshToken)
		if v.LeaseOwner != "" {
			s += fmt.Sprintf(" lease %s/%d", v.LeaseOwner, v.LeaseEpoch)
		}
		if v.Suspect != "" {
			s += " suspect " + v.Suspect
		}
		if !v.NextAttemptAt.IsZero() {
			s += " backoff"
		}
		return s
	case *tokenbroker.LeaseGrant:
		if v.Won {
			s := fmt.Sprintf("won epoch %d attempt %d", v.Lease.Epoch, v.Attempt)
			if v.Suspect != "" {
				s += " suspect " + v.Suspect
			}
			if v.PreviousOwner != "" {
				s += " took over from " + v.PreviousOwner
			}
			return s
		}
		s := fmt.Sprintf("lost (gen %d %s", v.Generation, v.State)
		if v.LeaseOwner != "" {
			s += " held by " + v.LeaseOwner
		}
		if v.NextAttemptAt.After(v.Now) {
			s += " backoff"
		}
		return s + ")"
	case *tokenbroker.ProviderHealth:
		if v == nil {
			return "nothing"
		}
		s := fmt.Sprintf("failures %d", v.Failures)
		if v.Open() {
			s += " open"
		}
		if v.Misconfigured != "" {
			s += " misconfigured"
		}
		return s
	case bool:
		return fmt.Sprint(v)
	case healthChange:
		return fmt.Sprintf("failures %d opened %v", v.after.Failures, v.changed)
	}
	return fmt.Sprintf("%v", v)
}

type healthChange struct {
	after   *tokenbroker.ProviderHealth
	changed bool
}

// storeView is one incarnation's connection to the simulated database: it
// implements refresh.Store. Every statement is an operation of the
// schedule.
type storeView struct {
	w   *World
	inc *incarnation
}

func (s *storeView) stmt(ctx context.Context, kind, desc string, apply func(now time.Time) (any, int64, error)) (any, error) {
	return s.w.register(&op{inc: s.inc, kind: kind, ctx: ctx, desc: kind + " " + desc, apply: apply})
}

func (s *storeView) GetLink(ctx context.Context, userID, providerID string) (*tokenbroker.Link, error) {
	v, err := s.stmt(ctx, "GetLink", userID, func(time.Time) (any, int64, error) {
		l, err := s.w.db.GetLink(userID, providerID)
		return l, 0, err
	})
	if err != nil {
		return nil, err
	}
	return v.(*tokenbroker.Link), nil
}

func (s *storeView) AcquireLease(ctx context.Context, r tokenbroker.LeaseRequest) (*tokenbroker.LeaseGrant, error) {
	v, err := s.stmt(ctx, "AcquireLease", fmt.Sprintf("%s gen %d", s.w.linkName(r.LinkID), r.Generation), func(now time.Time) (any, int64, error) {
		before := s.w.db.LinkByID(r.LinkID)
		g, err := s.w.db.AcquireLease(now, r)
		if err == nil {
			s.w.ck.onAcquire(s.w, s.inc, before, g)
		}
		return g, 0, err
	})
	if err != nil {
		return nil, err
	}
	return v.(*tokenbroker.LeaseGrant), nil
}

func (s *storeView) RenewLease(ctx context.Context, lease tokenbroker.Lease, ttl time.Duration) (bool, error) {
	v, err := s.stmt(ctx, "RenewLease", fmt.Sprintf("%s epoch %d", s.w.linkName(lease.LinkID), lease.Epoch), func(now time.Time) (any, int64, error) {
		ok, err := s.w.db.RenewLease(now, lease, ttl)
		return ok, 0, err
	})
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}

func (s *storeView) ReleaseLease(ctx context.Context, lease tokenbroker.Lease, r tokenbroker.Release, rec tokenbroker.Record) (bool, error) {
	desc := fmt.Sprintf("%s epoch %d class %q backoff %s", s.w.linkName(lease.LinkID), lease.Epoch, r.Class, r.Backoff.Round(time.Millisecond))
	v, err := s.stmt(ctx, "ReleaseLease", desc, func(now time.Time) (any, int64, error) {
		before := s.w.db.LinkByID(lease.LinkID)
		ok, err := s.w.db.ReleaseLease(now, lease, r, rec)
		if ok {
			s.w.ck.onRelease(s.w, s.inc, before, r)
			return ok, lease.LinkID, err
		}
		return ok, 0, err
	})
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}

func (s *storeView) CommitRefresh(ctx context.Context, lease tokenbroker.Lease, l *tokenbroker.Link, rec tokenbroker.Record) (bool, error) {
	desc := fmt.Sprintf("%s epoch %d gen %d rt=%s", s.w.linkName(lease.LinkID), lease.Epoch, lease.Generation, l.Token.RefreshToken)
	l = copyLink(l)
	v, err := s.stmt(ctx, "CommitRefresh", desc, func(now time.Time) (any, int64, error) {
		before := s.w.db.LinkByID(lease.LinkID)
		ok, err := s.w.db.CommitRefresh(now, lease, l, rec)
		if ok {
			s.w.ck.onCommit(s.w, s.inc, before, l)
			return ok, lease.LinkID, err
		}
		return ok, 0, err
	})
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}

func (s *storeView) MarkReauthRequired(ctx context.Context, lease tokenbroker.Lease, r tokenbroker.Reauth, rec tokenbroker.Record) (bool, error) {
	desc := fmt.Sprintf("%s epoch %d reason %s", s.w.linkName(lease.LinkID), lease.Epoch, r.Reason)
	v, err := s.stmt(ctx, "MarkReauthRequired", desc, func(now time.Time) (any, int64, error) {
		before := s.w.db.LinkByID(lease.LinkID)
		ok, err := s.w.db.MarkReauthRequired(now, lease, r, rec)
		if ok {
			s.w.ck.onMark(s.w, s.inc, before, r, rec)
			return ok, lease.LinkID, err
		}
		return ok, 0, err
	})
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}

func (s *storeView) GetProviderHealth(ctx context.Context, id string) (*tokenbroker.ProviderHealth, error) {
	v, err := s.stmt(ctx, "GetProviderHealth", id, func(now time.Time) (any, int64, error) {
		return s.w.db.GetProviderHealth(now, id), 0, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*tokenbroker.ProviderHealth), nil
}

func (s *storeView) ListProviderHealth(ctx context.Context) ([]*tokenbroker.ProviderHealth, error) {
	v, err := s.stmt(ctx, "ListProviderHealth", "", func(now time.Time) (any, int64, error) {
		return s.w.db.ListProviderHealth(now), 0, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]*tokenbroker.ProviderHealth), nil
}

func (s *storeView) RecordProviderFailure(ctx context.Context, id string, f tokenbroker.ProviderFailure) (*tokenbroker.ProviderHealth, bool, error) {
	v, err := s.stmt(ctx, "RecordProviderFailure", id, func(now time.Time) (any, int64, error) {
		after, changed, err := s.w.db.RecordProviderFailure(now, id, f)
		return healthChange{after, changed}, 0, err
	})
	if err != nil {
		return nil, false, err
	}
	hc := v.(healthChange)
	return hc.after, hc.changed, nil
}

func (s *storeView) RecordProviderSuccess(ctx context.Context, id string, rec tokenbroker.Record) (*tokenbroker.ProviderHealth, error) {
	v, err := s.stmt(ctx, "RecordProviderSuccess", id, func(now time.Time) (any, int64, error) {
		before, err := s.w.db.RecordProviderSuccess(now, id, rec)
		return before, 0, err
	})
	if err != nil {
		return nil, err
	}
	return v.(*tokenbroker.ProviderHealth), nil
}

func (s *storeView) AcquireProviderProbe(ctx context.Context, id, owner string, ttl time.Duration) (bool, error) {
	v, err := s.stmt(ctx, "AcquireProviderProbe", id, func(now time.Time) (any, int64, error) {
		return s.w.db.AcquireProviderProbe(now, id, owner, ttl), 0, nil
	})
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}

// providerView is one incarnation's HTTP client to the simulated provider:
// it implements tokenbroker.Provider (only Refresh is used by the
// coordinator).
type providerView struct {
	w   *World
	inc *incarnation
}

func (p *providerView) ID() string   { return providerID }
func (p *providerView) Kind() string { return "oauth2" }
func (p *providerView) Info() tokenbroker.ProviderInfo {
	return tokenbroker.ProviderInfo{ID: providerID, Kind: "oauth2", RefreshAhead: p.w.p.refreshAhead}
}
func (p *providerView) RefreshAhead() time.Duration { return p.w.p.refreshAhead }

func (p *providerView) Refresh(ctx context.Context, rt string) (*tokenbroker.Token, error) {
	v, err := p.w.register(&op{inc: p.inc, kind: kindRefresh, ctx: ctx, rt: rt, desc: "Refresh rt=" + rt})
	if err != nil {
		return nil, err
	}
	return v.(*tokenbroker.Token), nil
}

func (p *providerView) AuthCodeURL(state, codeChallenge, redirectURL string) string { return "" }
func (p *providerView) Exchange(context.Context, string, string, string) (*tokenbroker.Token, error) {
	return nil, tokenbroker.Errorf(tokenbroker.ENOTIMPLEMENTED, "not simulated")
}
func (p *providerView) DeviceAuth(context.Context) (*tokenbroker.DeviceAuth, error) {
	return nil, tokenbroker.Errorf(tokenbroker.ENOTIMPLEMENTED, "not simulated")
}
func (p *providerView) PollDevice(context.Context, string) (*tokenbroker.Token, error) {
	return nil, tokenbroker.Errorf(tokenbroker.ENOTIMPLEMENTED, "not simulated")
}
func (p *providerView) Validate(context.Context, string) (*tokenbroker.Account, error) {
	return nil, tokenbroker.Errorf(tokenbroker.ENOTIMPLEMENTED, "not simulated")
}
func (p *providerView) Revoke(context.Context, *tokenbroker.Token) error {
	return tokenbroker.Errorf(tokenbroker.ENOTIMPLEMENTED, "not simulated")
}

type providers struct{ p tokenbroker.Provider }

func (r providers) Provider(id string) (tokenbroker.Provider, error) {
	if id != providerID {
		return nil, tokenbroker.Errorf(tokenbroker.ENOTFOUND, "unknown provider %q", id)
	}
	return r.p, nil
}

func (r providers) List() []tokenbroker.Provider { return []tokenbroker.Provider{r.p} }

// seeRefresh draws what becomes of a provider request and schedules its
// arrival and answer.
func (w *World) seeRefresh(o *op) {
	p := &w.p
	f := answerFate{kind: "sent", answer: "deliver"}
	switch {
	case w.now.Before(w.misconfigUntil):
		f.kind = "client"
	case w.now.Before(w.provDown.until):
		f.kind = w.provDown.kind
		if f.kind == "503" {
			f.retryAfter = time.Duration(1+w.rng.IntN(5)) * time.Second
		}
	case w.chance(p.provRefuse):
		f.kind = "refuse"
	case w.chance(p.prov503):
		f.kind, f.retryAfter = "503", time.Duration(w.rng.IntN(30))*time.Second
	case w.chance(p.prov5xxBefore):
		f.kind = "5xxBefore"
	}
	switch f.kind {
	case "sent":
		f.arriveIn = w.between(time.Millisecond, 200*time.Millisecond)
		if w.chance(p.provSlow) {
			f.arriveIn = w.between(time.Second, 75*time.Second)
		}
		if w.chance(p.netDegrade) {
			// The sender's network degrades with its request on its way:
			// the request is slow to reach the provider and the sender is
			// cut off from the database for longer than its lease, so
			// another replica may take the lease over (and act on the
			// same generation) before the request is processed and its
			// answer comes back to a holder that no longer holds.
			cut := w.between(w.cfg.LeaseTTL+w.cfg.Grace+w.cfg.RenewEvery, 30*time.Second)
			o.inc.partitionUntil = maxTime(o.inc.partitionUntil, w.now.Add(cut))
			o.inc.trouble(o.inc.partitionUntil)
			f.arriveIn = w.between(cut/2, w.cfg.ProviderTimeout)
			w.logf("PARTITION %s from the database for %s with its request on its way", o.inc.name, cut.Round(time.Millisecond))
		}
		f.answerIn = w.between(0, 50*time.Millisecond)
		switch {
		case w.chance(p.provReset):
			f.answer = "reset"
		case w.chance(p.prov5xxAfter):
			f.answer = "5xxAfter"
		case w.chance(p.provHang):
			f.answer = "hang"
		}
	case "hang":
		// The provider accepts the connection and never answers; the
		// coordinator's timeout ends the call.
		f.answer = "hang"
	default:
		f.answerIn = w.between(0, 100*time.Millisecond)
	}
	o.answer = f
	w.fig.ProviderSends++
	w.logf("%s sends Refresh rt=%s (%s)", o.inc.name, o.rt, f.describe())
	w.ck.onSend(w, o)
	if o.abandoned {
		return
	}
	if f.kind == "hang" {
		return
	}
	if f.kind != "sent" {
		w.addEvent(w.now.Add(f.answerIn), o.inc, "answer:"+o.key, func() { w.answerRefresh(o, nil, nil) })
		return
	}
	if fam := w.idp.byRT[o.rt]; fam != nil {
		fam.inflight[o] = true
	}
	w.addEvent(w.now.Add(f.arriveIn), nil, "arrive:"+o.key, func() { w.arriveRefresh(o) })
}

func (f answerFate) describe() string {
	switch f.kind {
	case "sent":
		s := fmt.Sprintf("arrives in %s", f.arriveIn.Round(time.Millisecond))
		if f.answer != "deliver" {
			s += ", answer " + f.answer
		}
		return s
	case "503":
		return fmt.Sprintf("503 Retry-After %s", f.retryAfter)
	}
	return f.kind
}

// orphanWindow is how long after its client gave up (or died) a request
// already sent may still be processed. The model assumes a provider
// processes a request within this of the client's timeout, or never.
const orphanWindow = time.Second

// arriveRefresh is the provider processing a request.
func (w *World) arriveRefresh(o *op) {
	if fam := w.idp.byRT[o.rt]; fam != nil {
		delete(fam.inflight, o)
	}
	gaveUp := time.Time{}
	if o.abandoned {
		gaveUp = o.abandonedAt
	}
	if o.inc.dead && (gaveUp.IsZero() || o.inc.diedAt.Before(gaveUp)) {
		gaveUp = o.inc.diedAt
	}
	if !gaveUp.IsZero() && w.now.After(gaveUp.Add(orphanWindow)) {
		w.logf("%s request rt=%s never reaches the provider", o.inc.name, o.rt)
		delete(w.ops, o.key)
		return
	}
	if o.answer.answer == "5xxAfter" && w.chance(0.3) {
		// A 5xx from a proxy in front of the provider: not processed.
		w.addEvent(w.now.Add(o.answer.answerIn), o.inc, "answer:"+o.key, func() { w.answerRefresh(o, nil, nil) })
		return
	}
	proc, tok, perr := w.idp.refresh(o.rt, w.now, o.inc, o)
	o.proc = proc
	w.fig.Processed++
	if proc.spent {
		w.fig.Rotations++
		w.logf("idp processes rt=%s from %s -> rotated to %s", o.rt, o.inc.name, proc.newRT)
	} else {
		w.logf("idp processes rt=%s from %s -> rejected (%s)", o.rt, o.inc.name, perr.Description)
	}
	w.ck.onProcess(w, o, proc)
	if o.answer.answer == "hang" {
		return // the answer never comes; the client's timeout ends the call
	}
	w.addEvent(w.now.Add(o.answer.answerIn), o.inc, "answer:"+o.key, func() { w.answerRefresh(o, tok, perr) })
}

// answerRefresh delivers a provider request's answer (or its failure).
func (w *World) answerRefresh(o *op, tok *tokenbroker.Token, perr *tokenbroker.ProviderError) {
	delete(w.ops, o.key)
	if o.abandoned || o.inc.dead {
		w.ck.onAnswerLost(w, o)
		return
	}
	var err error
	f := o.answer
	switch {
	case f.kind == "refuse":
		err = &tokenbroker.ProviderError{ProviderID: providerID, Class: tokenbroker.FailureNotProcessed, Err: errors.New("sim: connection refused")}
	case f.kind == "503":
		err = &tokenbroker.ProviderError{ProviderID: providerID, StatusCode: 503, Class: tokenbroker.FailureNotProcessed, RetryAfter: f.retryAfter}
	case f.kind == "client":
		err = &tokenbroker.ProviderError{ProviderID: providerID, StatusCode: 401, Code: "invalid_client", Class: tokenbroker.FailureClient}
	case f.kind == "5xxBefore" || f.answer == "5xxAfter":
		err = &tokenbroker.ProviderError{ProviderID: providerID, StatusCode: 502, Class: tokenbroker.FailureUncertain}
	case f.answer == "reset":
		err = &tokenbroker.ProviderError{ProviderID: providerID, Class: tokenbroker.FailureUncertain, Err: errors.New("sim: connection reset after the request was written")}
	case perr != nil:
		err = perr
	}
	if w.chance(w.p.crashAtStep) {
		w.crash(o.inc, "with the provider's answer on its way")
		w.ck.onAnswerLost(w, o)
		return
	}
	if w.chance(15 * w.p.pauseAtStep) {
		w.pause(o.inc, " with the provider's answer on its way")
		w.addEvent(w.now, o.inc, "answer:"+o.key, func() { w.answerRefresh(o, tok, perr) })
		return
	}
	if err != nil {
		w.logf("%s gets %v", o.inc.name, err)
		w.ck.onAnswer(w, o, nil, err)
		w.deliver(o, opResult{err: err})
		return
	}
	w.logf("%s gets rt=%s", o.inc.name, tok.RefreshToken)
	w.ck.onAnswer(w, o, tok, nil)
	c := *tok
	w.deliver(o, opResult{v: &c})
}

// linkName names a link by its user for the schedule.
func (w *World) linkName(id int64) string {
	for _, l := range w.links {
		if l.id == id {
			return l.user
		}
	}
	return fmt.Sprintf("link%d", id)
}
