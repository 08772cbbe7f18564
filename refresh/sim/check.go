package sim

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// ledger is the simulation's ground truth, kept beside the database and
// the provider, against which the invariants are judged. Every method runs
// in the scheduler (under World.mu), in a deterministic order.
type ledger struct {
	hist map[int64][]histEntry
	// lastUncertain: when an uncertain outcome of a request that carried
	// the refresh token was last recorded on its link (I2: a re-send of it
	// is spaced by the link's backoff).
	lastUncertain map[string]time.Time
	// epochInc: which process acquired a link's lease epoch; takenOver:
	// when that lease was taken over.
	epochInc  map[[2]int64]*incarnation
	takenOver map[[2]int64]time.Time
	// why: the loss windows an attempt with this refresh token may have
	// crossed (answer_lost, holder_died): the causes a lost refresh of
	// its generation may be attributed to.
	why map[string]map[string]bool
	// sendEpoch: the lease under which a request was sent.
	sendEpoch map[*op]int64
	abandoned []*op
}

// previousTakeover: the generation before was taken over (whether or not
// its holder still had a request on its way).
const previousTakeover = "previous_takeover"

type histEntry struct {
	at     time.Time
	gen    int64
	access string
	rt     string
	state  tokenbroker.LinkState
}

func (k *ledger) init() {
	k.hist = map[int64][]histEntry{}
	k.lastUncertain = map[string]time.Time{}
	k.epochInc = map[[2]int64]*incarnation{}
	k.takenOver = map[[2]int64]time.Time{}
	k.why = map[string]map[string]bool{}
	k.sendEpoch = map[*op]int64{}
}

func (k *ledger) record(w *World, id int64) {
	l := w.db.LinkByID(id)
	if l == nil {
		return
	}
	k.hist[id] = append(k.hist[id], histEntry{at: w.now, gen: l.Generation, access: l.Token.AccessToken, rt: l.Token.RefreshToken, state: l.State})
}

func (k *ledger) mark(rt, cause string) {
	if k.why[rt] == nil {
		k.why[rt] = map[string]bool{}
	}
	k.why[rt][cause] = true
}

func (w *World) linkOfRT(rt string) *simLink {
	f := w.idp.byRT[rt]
	if f == nil {
		return nil
	}
	for _, l := range w.links {
		if l.user == f.user {
			return l
		}
	}
	return nil
}

func (k *ledger) onPut(w *World, l *tokenbroker.Link) { k.record(w, l.ID) }

// onSend: a request leaves a coordinator.
func (k *ledger) onSend(w *World, o *op) {
	l := w.linkOfRT(o.rt)
	if l == nil {
		return
	}
	epoch := o.inc.leases[l.id]
	k.sendEpoch[o] = epoch
	// I1: only the lease holder sends, and a holder whose lease was taken
	// over no longer is one.
	if at, ok := k.takenOver[[2]int64{l.id, epoch}]; ok {
		w.fail("I1", "%s sent rt=%s under its lease (epoch %d), which had been taken over %s earlier: two holders of one generation",
			o.inc.name, o.rt, epoch, w.now.Sub(at).Round(time.Millisecond))
	}
	// I2: after an uncertain outcome recorded on the link, the same
	// refresh token is sent again only after the link's backoff (an
	// outcome that could not be recorded leaves the lease to expire: the
	// takeover is the holder_died window, spaced by the lease).
	minGap := w.cfg.UncertainBackoff / 2
	if at, ok := k.lastUncertain[o.rt]; ok && w.now.Before(at.Add(minGap)) {
		w.fail("I2", "%s re-sent rt=%s %s after an uncertain outcome of it was recorded; the link's backoff must space re-sends by at least %s",
			o.inc.name, o.rt, w.now.Sub(at).Round(time.Millisecond), minGap)
	}
	// I6: the flight that sends holds no statement open.
	for _, s := range w.ops {
		if s != o && s.inc == o.inc && s.call == o.call && s.kind != "RenewLease" && s.kind != kindRefresh && !s.abandoned && !s.resolved {
			w.fail("I6", "%s has %s open while it calls the provider", o.inc.name, s.key)
		}
	}
}

// onAbandon: a coordinator gave up waiting for a request (its timeout, or
// its context cancelled).
func (k *ledger) onAbandon(w *World, o *op) {
	if o.kind != kindRefresh {
		return
	}
	// The coordinator classifies it uncertain, whatever ended its wait.
	k.mark(o.rt, tokenbroker.LossAnswerLost)
	if p := o.proc; p != nil && p.spent && !p.delivered && p.lost == "" {
		p.lost, p.lostWhy = k.abandonCause(o), "the coordinator stopped waiting for the answer ("+o.abandonWhy+")"
	}
}

func (k *ledger) abandonCause(o *op) string {
	if o.abandonWhy == "timeout" {
		return tokenbroker.LossAnswerLost
	}
	return "abandoned"
}

// onProcess: the provider processed a request.
func (k *ledger) onProcess(w *World, o *op, p *processing) {
	if p.fam == nil {
		return
	}
	if p.spent {
		if o.abandoned {
			p.lost, p.lostWhy = k.abandonCause(o), "processed after the coordinator stopped waiting"
		} else if o.inc.dead {
			p.lost, p.lostWhy = tokenbroker.LossHolderDied, "processed after its sender died"
		}
		return
	}
	i, ok := p.fam.index[p.rt]
	if !ok || i == len(p.fam.rts)-1 {
		return // rejected for another reason: a revoked grant
	}
	// A spent refresh token came back: the provider revoked the family.
	// I2 allows it only in the two loss windows.
	spender := p.fam.spentBy[i]
	l := w.linkOfRT(p.rt)
	cause, why := "", ""
	switch {
	case spender.lost == tokenbroker.LossAnswerLost || spender.lost == tokenbroker.LossHolderDied:
		cause, why = spender.lost, spender.lostWhy
	case spender.from.dead && !spender.committed:
		cause, why = tokenbroker.LossHolderDied, "its holder "+spender.from.name+" died before committing the answer"
	case l != nil && !k.takenOver[[2]int64{l.id, k.sendEpoch[spender.op]}].IsZero():
		cause, why = tokenbroker.LossHolderDied, "its holder "+spender.from.name+" lost its lease (taken over) before committing the answer"
	case l != nil && !k.takenOver[[2]int64{l.id, k.sendEpoch[o]}].IsZero():
		// The re-sent request was sent by a holder whose lease was then
		// taken over while the request was on its way: the successor's
		// request reached the provider first.
		cause, why = tokenbroker.LossHolderDied, "its sender "+o.inc.name+" lost its lease (taken over) while its request was on its way, and the successor's reached the provider first"
	}
	if cause == "" {
		state := "delivered to " + spender.from.name
		switch {
		case spender.lost == "abandoned":
			state = "abandoned by " + spender.from.name + ": " + spender.lostWhy
		case !spender.delivered:
			state = "still on its way to " + spender.from.name
		case spender.committed:
			state += " and committed"
		}
		w.fail("I2", "%s re-sent rt=%s after the provider rotated it (processed at %s for %s), outside the loss windows: the answer was %s",
			o.inc.name, p.rt, spender.at.Sub(w.start).Round(time.Millisecond), spender.from.name, state)
		return
	}
	if p.fam.reuse == p {
		w.fig.Losses[cause]++
		w.logf("LOSS of %s's grant f%d (%s: %s)", p.fam.user, p.fam.id, cause, why)
	}
}

// onAnswer: a coordinator received the provider's answer.
func (k *ledger) onAnswer(w *World, o *op, tok *tokenbroker.Token, err error) {
	if tok != nil {
		o.proc.delivered, o.proc.deliveredAt = true, w.now
		return
	}
	var pe *tokenbroker.ProviderError
	if errors.As(err, &pe) && pe.Class == tokenbroker.FailureUncertain {
		w.fig.UncertainAnswers++
		k.mark(o.rt, tokenbroker.LossAnswerLost)
		if p := o.proc; p != nil && p.spent && p.lost == "" {
			p.lost, p.lostWhy = tokenbroker.LossAnswerLost, "its answer was lost in transit ("+o.answer.answer+")"
		}
	}
}

// onAnswerLost: an answer found nobody (the process died, or gave up).
func (k *ledger) onAnswerLost(w *World, o *op) {
	p := o.proc
	if p == nil || !p.spent || p.delivered || p.lost != "" {
		return
	}
	if o.abandoned {
		p.lost, p.lostWhy = k.abandonCause(o), "the coordinator had stopped waiting ("+o.abandonWhy+")"
		return
	}
	p.lost, p.lostWhy = tokenbroker.LossHolderDied, "its holder "+o.inc.name+" died before the answer reached it"
}

// onAcquire: a lease acquisition was applied.
func (k *ledger) onAcquire(w *World, inc *incarnation, before *tokenbroker.Link, g *tokenbroker.LeaseGrant) {
	if !g.Won {
		return
	}
	id := g.Lease.LinkID
	k.epochInc[[2]int64{id, g.Lease.Epoch}] = inc
	inc.leases[id] = g.Lease.Epoch
	if g.PreviousOwner == "" || before == nil {
		return
	}
	w.fig.Takeovers++
	prev := [2]int64{id, before.LeaseEpoch}
	k.takenOver[prev] = w.now
	k.mark(before.Token.RefreshToken, tokenbroker.LossHolderDied)
	// I1: a lease is taken over only from a holder that stopped renewing
	// it: dead, paused, or cut off from (or failed by) the database.
	// Its trouble must fall within the lease's last term (a renewal, or
	// the release, that did not reach the database; a renewal under way
	// may still extend the lease once after a failed release).
	holder := k.epochInc[prev]
	from := before.LeaseUntil.Add(-w.cfg.LeaseTTL - w.cfg.RenewEvery - time.Second)
	if holder != nil && !holder.dead && holder.troubleUntil.Before(from) {
		w.fail("I1", "%s took over the lease of %s (epoch %d) from %s, which lives and whose database answered: two holders of one generation",
			inc.name, w.linkName(id), before.LeaseEpoch, holder.name)
	}
}

func (k *ledger) onRelease(w *World, inc *incarnation, before *tokenbroker.Link, r tokenbroker.Release) {
	k.record(w, before.ID)
	if r.Class == tokenbroker.FailureUncertain {
		k.lastUncertain[before.Token.RefreshToken] = w.now
	}
}

// onCommit: a refreshed token was committed.
func (k *ledger) onCommit(w *World, inc *incarnation, before, l *tokenbroker.Link) {
	k.record(w, before.ID)
	if !before.State.Refreshable() {
		w.fail("I3", "%s's commit of rt=%s resurrected %s, marked %s (%s)", inc.name, l.Token.RefreshToken,
			before.UserID, before.State, before.ReauthReason)
		return
	}
	parent := w.idp.parentOf(l.Token.RefreshToken)
	if parent != before.Token.RefreshToken {
		w.fail("I3", "%s committed rt=%s (refreshed from %s) over generation %d of %s, whose refresh token is %s: a newer or another grant's token replaced",
			inc.name, l.Token.RefreshToken, parent, before.Generation, before.UserID, before.Token.RefreshToken)
		return
	}
	// The suspicion a commit after a takeover may pass on (what the
	// coordinator cannot know: whether the holder taken over had a request
	// on its way), for about as long as the coordinator's (a provider
	// timeout and a lease from the carrying generation's commit to the
	// lease that commits, plus that holder's own call).
	if k.why[parent][tokenbroker.LossHolderDied] || k.why[parent][previousTakeover] && w.now.Sub(before.RefreshedAt) < 2*(w.cfg.ProviderTimeout+w.cfg.LeaseTTL) {
		k.mark(l.Token.RefreshToken, previousTakeover)
	}
	if f := w.idp.byRT[parent]; f != nil {
		for o := range f.inflight {
			if !k.takenOver[[2]int64{before.ID, k.sendEpoch[o]}].IsZero() {
				// A holder taken over still has a request on its way: it
				// can spend the new generation's token too.
				k.mark(l.Token.RefreshToken, tokenbroker.LossHolderDied)
			}
		}
	}
	if f := w.idp.byRT[l.Token.RefreshToken]; f != nil {
		if i := f.index[l.Token.RefreshToken]; i > 0 && f.spentBy[i-1] != nil {
			f.spentBy[i-1].committed = true
		}
	}
}

// onMark: a link was marked reauth_required.
func (k *ledger) onMark(w *World, inc *incarnation, before *tokenbroker.Link, r tokenbroker.Reauth, rec tokenbroker.Record) {
	k.record(w, before.ID)
	rt := before.Token.RefreshToken
	// I4: never while the provider honours the grant.
	if w.idp.honours(rt) {
		w.fail("I4", "%s marked %s %s while the provider still honours its refresh token %s", inc.name, before.UserID, r.Reason, rt)
		return
	}
	f := w.idp.byRT[rt]
	switch r.Reason {
	case tokenbroker.ReasonLostRefresh:
		w.fig.LostMarks++
		audited := false
		for _, e := range rec.Audit {
			audited = audited || e.Action == tokenbroker.AuditLostRefresh
		}
		if !audited {
			w.fail("I2", "%s marked %s lost_refresh without the link.lost_refresh audit event in the same write", inc.name, before.UserID)
		}
		cause := ""
		for _, c := range []string{tokenbroker.LossHolderDied, tokenbroker.LossAnswerLost} {
			if strings.Contains(r.Detail, "("+c+")") {
				cause = c
			}
		}
		known := k.why[rt][cause] || cause == tokenbroker.LossHolderDied && k.why[rt][previousTakeover]
		if cause == "" || !known {
			w.fail("I2", "%s marked %s lost_refresh attributed to %q, but no attempt of rt=%s crossed that window (%v): %s",
				inc.name, before.UserID, cause, rt, k.why[rt], r.Detail)
		}
	default:
		w.fig.RevokedMarks++
		if f != nil && f.revoked == "reuse" {
			w.fail("I2", "%s marked %s %s, but the provider revoked the grant because a spent refresh token came back: a lost refresh not attributed",
				inc.name, before.UserID, r.Reason)
		}
	}
}

// checkCalls judges the callers' answers of the last step (I5).
func (k *ledger) checkCalls(w *World) {
	for _, c := range w.callers {
		for ; c.checked < len(c.results); c.checked++ {
			r := c.results[c.checked]
			if c.inc.dead && !c.inc.diedAt.After(r.end) {
				continue // its process died; nobody got this answer
			}
			w.fig.Calls++
			k.checkCall(w, c, r)
		}
	}
}

func (k *ledger) checkCall(w *World, c *caller, r *callResult) {
	name := c.inc.name + " " + r.c.id
	late := r.end.Sub(r.deadline) - c.inc.pausedDuring(r.start, r.end)
	if late > 0 {
		w.fail("I5", "%s answered %s after its caller's deadline", name, late)
	}
	if r.err == nil {
		w.fig.Tokens++
		w.logf("%s %s gets %s", c.inc.name, r.c.id, r.tok.AccessToken)
		if !r.tok.ValidFor(r.end, r.c.minValid) {
			w.fail("I5", "%s got a token not valid for min_valid %s", name, r.c.minValid)
		}
		if !k.wasCurrent(r.c.link.id, r.tok.AccessToken, r.start, r.end) {
			w.fail("I5", "%s got %s, which was not the link's token at any time of the call", name, r.tok.AccessToken)
		}
		return
	}
	kind, ok := k.typed(w, r)
	w.fig.Errors[kind]++
	w.logf("%s %s gets %s: %v", c.inc.name, r.c.id, kind, r.err)
	if !ok {
		w.fail("I5", "%s ended with %s: %v", name, kind, r.err)
	}
}

// typed classifies a caller's error and says whether it is a definite,
// typed one that the link's history justifies.
func (k *ledger) typed(w *World, r *callResult) (string, bool) {
	var (
		re  *tokenbroker.ReauthRequiredError
		pu  *tokenbroker.ProviderUnavailableError
		pm  *tokenbroker.ProviderMisconfiguredError
		su  *tokenbroker.StoreUnavailableError
		app *tokenbroker.Error
	)
	switch {
	case errors.As(r.err, &re):
		// Never a spurious loss: the link was marked during the call.
		for _, h := range k.during(r.c.link.id, r.start, r.end) {
			if h.state == tokenbroker.LinkReauthRequired {
				return "reauth_required:" + string(re.Code), true
			}
		}
		return "reauth_required (the link was active)", false
	case errors.As(r.err, &pu):
		return "provider_unavailable", pu.RetryAfter >= time.Second
	case errors.As(r.err, &pm):
		return "provider_misconfigured", pm.RetryAfter >= time.Second
	case errors.As(r.err, &su):
		return "store_unavailable", true
	case errors.As(r.err, &app):
		return app.Code, app.Code == tokenbroker.EINVALID && r.c.minValid > 0
	case errors.Is(r.err, context.DeadlineExceeded):
		return "deadline", !r.end.Before(r.deadline)
	}
	return "untyped error", false
}

// during returns the history entries of link in force at some time of
// [from, to].
func (k *ledger) during(id int64, from, to time.Time) []histEntry {
	h := k.hist[id]
	var out []histEntry
	for i, e := range h {
		end := time.Time{}
		if i+1 < len(h) {
			end = h[i+1].at
		}
		if e.at.After(to) || (!end.IsZero() && end.Before(from)) {
			continue
		}
		out = append(out, e)
	}
	return out
}

func (k *ledger) wasCurrent(id int64, access string, from, to time.Time) bool {
	for _, e := range k.during(id, from, to) {
		if e.access == access {
			return true
		}
	}
	return false
}

// final checks the end state once the faults healed and every link was
// asked for a token again: every link is active with a grant the provider
// honours, or marked with the right reason; every loss counted.
func (k *ledger) final(w *World) {
	for _, c := range w.callers {
		if !c.settle || len(c.results) == 0 {
			continue
		}
		if last := c.results[len(c.results)-1]; !definitive(last) {
			w.fail("liveness", "%s had no definite answer for %s after the faults healed: %v", c.inc.name, last.c.link.user, last.err)
		}
	}
	for _, l := range w.links {
		row := w.db.LinkByID(l.id)
		switch {
		case row.State.Refreshable():
			if !w.idp.honours(row.Token.RefreshToken) {
				f := w.idp.byRT[row.Token.RefreshToken]
				w.fail("I2", "%s ended active with rt=%s, which the provider no longer honours (grant %s): an undetected loss", l.user, row.Token.RefreshToken, f.revoked)
			}
		default:
			w.logf("END %s: %s (%s)", l.user, row.ReauthReason, row.FailureReason)
		}
	}
	var counted int64
	for _, incs := range w.reps {
		for _, inc := range incs {
			counted += inc.coord.Stats().LostRefreshes
		}
	}
	if counted < int64(w.fig.LostMarks) {
		w.fail("I2", "%d links marked lost_refresh, %d lost refreshes counted", w.fig.LostMarks, counted)
	}
	w.logf("END: %d calls, %d tokens, %d provider sends, %d processed, losses %v", w.fig.Calls, w.fig.Tokens, w.fig.ProviderSends, w.fig.Processed, w.fig.Losses)
}
