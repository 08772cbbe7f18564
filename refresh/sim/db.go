package sim

import (
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// DB is the simulated database: the links, provider health and audit rows
// of the refresh protocol, with the exact semantics of the conditional
// statements of store/sqlite and store/postgres (docs/design.md), each
// applied atomically at a time the caller passes in (the database's
// clock). Times are kept to the millisecond, as the stores keep them.
//
// DB itself is not safe for concurrent use and does no I/O: the
// simulation applies each statement in its scheduler, and [ConformanceStore]
// serializes the calls of the conformance suite.
type DB struct {
	links  map[int64]*dbLink
	byKey  map[[2]string]int64
	nextID int64
	health map[string]*dbHealth
	audit  []tokenbroker.AuditEvent

	// Broken removes a mechanism of the statements, for the simulation's
	// own test: each removal must make the simulation fail.
	Broken Breakage
}

// Breakage names mechanisms of the store's statements that a test removes
// to prove that the simulation notices.
type Breakage struct {
	NoCommitFence     bool // CommitRefresh ignores the lease owner and epoch
	NoAcquireCAS      bool // AcquireLease ignores the generation read
	NoCommitCAS       bool // CommitRefresh ignores the lease's generation
	NoRenewal         bool // RenewLease reports success and extends nothing
	NoLinkBackoff     bool // ReleaseLease records no next_attempt_at
	NoSuspect         bool // neither AcquireLease nor ReleaseLease records a suspect
	NoGrace           bool // an expired lease is taken over at once
	NoMarkFence       bool // MarkReauthRequired ignores the lease
	NoMarkCAS         bool // MarkReauthRequired ignores the lease's generation
	NoReleaseFence    bool // ReleaseLease ignores the lease
	NoAcquireLiveness bool // AcquireLease takes a live lease too
}

type dbLink struct {
	l    tokenbroker.Link
	seen time.Time // lease_expired_seen_at
}

type dbHealth struct {
	h          tokenbroker.ProviderHealth
	probeOwner string
}

// NewDB returns an empty database.
func NewDB() *DB {
	return &DB{links: map[int64]*dbLink{}, byKey: map[[2]string]int64{}, health: map[string]*dbHealth{}}
}

func ms(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Truncate(time.Millisecond).UTC()
}

func plus(now time.Time, d time.Duration) time.Time {
	return now.Add(time.Duration(d.Milliseconds()) * time.Millisecond)
}

// copyLink returns a deep copy of l, as a read from the database is.
func copyLink(l *tokenbroker.Link) *tokenbroker.Link {
	c := *l
	c.Token.Scopes = slices.Clone(l.Token.Scopes)
	c.Token.Extra = maps.Clone(l.Token.Extra)
	return &c
}

// storedToken is t as the stores keep it: times to the millisecond, empty
// scopes and extra as none.
func storedToken(t tokenbroker.Token) tokenbroker.Token {
	t.Expiry, t.IssuedAt = ms(t.Expiry), ms(t.IssuedAt)
	if len(t.Scopes) == 0 {
		t.Scopes = nil
	} else {
		t.Scopes = slices.Clone(t.Scopes)
	}
	if len(t.Extra) == 0 {
		t.Extra = nil
	} else {
		t.Extra = maps.Clone(t.Extra)
	}
	return t
}

// writeRecord writes a record validRecord accepted: its audit events (its
// webhook events go to an outbox the simulation does not keep).
func (db *DB) writeRecord(now time.Time, rec tokenbroker.Record) {
	for _, e := range rec.Audit {
		if e.Time.IsZero() {
			e.Time = now
		}
		e.Time = ms(e.Time)
		db.audit = append(db.audit, e)
	}
}

// validRecord is the stores' check of a record: a record that cannot be
// written undoes the change it comes with.
func validRecord(rec tokenbroker.Record) error {
	for _, e := range rec.Audit {
		if e.Action == "" {
			return tokenbroker.Errorf(tokenbroker.EINVALID, "an audit event needs an action")
		}
	}
	for _, e := range rec.Events {
		if err := e.Validate(); err != nil {
			return err
		}
	}
	return nil
}

func notFound(what string) error {
	return tokenbroker.Errorf(tokenbroker.ENOTFOUND, "%s not found", what)
}

// GetLink is the link read.
func (db *DB) GetLink(userID, providerID string) (*tokenbroker.Link, error) {
	id, ok := db.byKey[[2]string{userID, providerID}]
	if !ok {
		return nil, notFound("link")
	}
	return copyLink(&db.links[id].l), nil
}

// LinkByID returns a copy of the link with id, or nil.
func (db *DB) LinkByID(id int64) *tokenbroker.Link {
	r := db.links[id]
	if r == nil {
		return nil
	}
	return copyLink(&r.l)
}

// ListLinks returns userID's links by provider id.
func (db *DB) ListLinks(userID string) []*tokenbroker.Link {
	var out []*tokenbroker.Link
	for _, r := range db.links {
		if r.l.UserID == userID {
			out = append(out, copyLink(&r.l))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ProviderID < out[j].ProviderID })
	return out
}

// PutLink is the upsert of connect and import: a new link at generation 1,
// or the existing one replaced, its generation bumped, made active, its
// lease and the generation's accounting cleared, its lease epoch kept.
func (db *DB) PutLink(now time.Time, l *tokenbroker.Link, rec tokenbroker.Record) (*tokenbroker.Link, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if err := validRecord(rec); err != nil {
		return nil, err
	}
	now = ms(now)
	key := [2]string{l.UserID, l.ProviderID}
	var r *dbLink
	if id, ok := db.byKey[key]; ok {
		r = db.links[id]
		r.l.Generation++
	} else {
		db.nextID++
		r = &dbLink{l: tokenbroker.Link{ID: db.nextID, UserID: l.UserID, ProviderID: l.ProviderID, Generation: 1, CreatedAt: now}}
		db.links[r.l.ID] = r
		db.byKey[key] = r.l.ID
	}
	x := &r.l
	x.AccountID, x.AccountLogin = l.AccountID, l.AccountLogin
	x.Token = storedToken(l.Token)
	x.KeyID = l.KeyID
	x.State, x.ReauthReason, x.FailureReason = tokenbroker.LinkActive, "", ""
	x.LeaseOwner, x.LeaseUntil, r.seen = "", time.Time{}, time.Time{}
	x.Attempts, x.Suspect, x.Failures, x.FailingSince, x.LastError, x.NextAttemptAt = 0, "", 0, time.Time{}, "", time.Time{}
	x.UpdatedAt, x.RefreshedAt, x.LastUsedAt = now, now, now
	db.writeRecord(now, rec)
	return copyLink(x), nil
}

// DeleteLink removes the link.
func (db *DB) DeleteLink(now time.Time, userID, providerID string, rec tokenbroker.Record) (int64, error) {
	key := [2]string{userID, providerID}
	id, ok := db.byKey[key]
	if !ok {
		return 0, notFound("link")
	}
	if err := validRecord(rec); err != nil {
		return 0, err
	}
	delete(db.byKey, key)
	delete(db.links, id)
	db.writeRecord(ms(now), rec)
	return id, nil
}

// AcquireLease is the one conditional statement of step 4 (I1), with the
// grace of an expired, unreleased lease started by the first acquisition
// that finds it expired.
func (db *DB) AcquireLease(now time.Time, req tokenbroker.LeaseRequest) (*tokenbroker.LeaseGrant, error) {
	if req.Owner == "" {
		return nil, tokenbroker.Errorf(tokenbroker.EINVALID, "lease owner must not be empty")
	}
	r := db.links[req.LinkID]
	if r == nil {
		return nil, notFound("link lease")
	}
	now = ms(now)
	x := &r.l
	g := &tokenbroker.LeaseGrant{
		Generation: x.Generation, State: x.State, FailingSince: x.FailingSince, LeaseOwner: x.LeaseOwner, LeaseUntil: x.LeaseUntil,
		NextAttemptAt: x.NextAttemptAt, Attempt: x.Attempts, Suspect: x.Suspect, Now: now,
	}
	if !r.seen.IsZero() {
		g.GraceUntil = r.seen.Add(req.Grace)
	}
	free := x.LeaseOwner == "" ||
		(x.LeaseUntil.Before(now) && !r.seen.IsZero() && !plus(r.seen, req.Grace).After(now))
	if db.Broken.NoGrace {
		free = x.LeaseOwner == "" || x.LeaseUntil.Before(now)
	}
	if db.Broken.NoAcquireLiveness {
		free = true
	}
	genOK := x.Generation == req.Generation || db.Broken.NoAcquireCAS
	if genOK && x.State.Refreshable() &&
		(x.NextAttemptAt.IsZero() || !x.NextAttemptAt.After(now)) && free {
		prev := x.LeaseOwner
		x.LeaseOwner, x.LeaseUntil = req.Owner, plus(now, req.TTL)
		x.LeaseEpoch++
		r.seen = time.Time{}
		x.Attempts++
		if prev != "" && !db.Broken.NoSuspect {
			x.Suspect = tokenbroker.LossHolderDied
		}
		g.Won = true
		g.PreviousOwner = prev
		g.Lease = tokenbroker.Lease{LinkID: req.LinkID, Generation: req.Generation, Owner: req.Owner, Epoch: x.LeaseEpoch}
		g.Attempt, g.Suspect = x.Attempts, x.Suspect
		g.LeaseOwner, g.LeaseUntil, g.GraceUntil = req.Owner, x.LeaseUntil, time.Time{}
		return g, nil
	}
	if x.LeaseOwner != "" && x.LeaseUntil.Before(now) && r.seen.IsZero() {
		r.seen = now
		g.GraceUntil = now.Add(req.Grace)
	}
	return g, nil
}

func (db *DB) fenced(lease tokenbroker.Lease) *dbLink {
	r := db.links[lease.LinkID]
	if r == nil || r.l.LeaseOwner == "" || r.l.LeaseOwner != lease.Owner || r.l.LeaseEpoch != lease.Epoch {
		return nil
	}
	return r
}

// RenewLease extends the lease if it is still the holder's, expired or
// not, as long as nobody took it over.
func (db *DB) RenewLease(now time.Time, lease tokenbroker.Lease, ttl time.Duration) (bool, error) {
	r := db.fenced(lease)
	if r == nil {
		return false, nil
	}
	if db.Broken.NoRenewal {
		return true, nil
	}
	r.l.LeaseUntil, r.seen = plus(ms(now), ttl), time.Time{}
	return true, nil
}

// ReleaseLease gives the lease back with the attempt's outcome.
func (db *DB) ReleaseLease(now time.Time, lease tokenbroker.Lease, rel tokenbroker.Release, rec tokenbroker.Record) (bool, error) {
	r := db.fenced(lease)
	if db.Broken.NoReleaseFence {
		r = db.links[lease.LinkID]
	}
	if r == nil {
		return false, nil
	}
	if err := validRecord(rec); err != nil {
		return false, err
	}
	now = ms(now)
	x := &r.l
	x.LeaseOwner, x.LeaseUntil, r.seen = "", time.Time{}, time.Time{}
	if rel.Class == tokenbroker.FailureUncertain && x.Suspect == "" && !db.Broken.NoSuspect {
		x.Suspect = tokenbroker.LossAnswerLost
	}
	if rel.Class != "" {
		x.Failures++
		if x.FailingSince.IsZero() {
			x.FailingSince = now
		}
		x.LastError = rel.Error
	}
	if rel.Backoff.Milliseconds() > 0 && !db.Broken.NoLinkBackoff {
		x.NextAttemptAt = plus(now, rel.Backoff)
	}
	if rel.Degrade && rel.Class != "" && x.State == tokenbroker.LinkActive {
		x.State, x.UpdatedAt = tokenbroker.LinkDegraded, now
	}
	db.writeRecord(now, rec)
	return true, nil
}

// CommitRefresh is step 5: the compare-and-swap on the generation, fenced
// by the lease (I3).
func (db *DB) CommitRefresh(now time.Time, lease tokenbroker.Lease, l *tokenbroker.Link, rec tokenbroker.Record) (bool, error) {
	r := db.fenced(lease)
	if db.Broken.NoCommitFence {
		r = db.links[lease.LinkID]
	}
	if r == nil || (r.l.Generation != lease.Generation && !db.Broken.NoCommitCAS) {
		return false, nil
	}
	if err := validRecord(rec); err != nil {
		return false, err
	}
	now = ms(now)
	x := &r.l
	x.Token = storedToken(l.Token)
	x.KeyID = l.KeyID
	if l.AccountID != "" {
		x.AccountID = l.AccountID
	}
	if l.AccountLogin != "" {
		x.AccountLogin = l.AccountLogin
	}
	x.Generation++
	x.State, x.ReauthReason, x.FailureReason = tokenbroker.LinkActive, "", ""
	x.LeaseOwner, x.LeaseUntil, r.seen = "", time.Time{}, time.Time{}
	x.Suspect = l.Suspect
	if db.Broken.NoSuspect {
		x.Suspect = ""
	}
	x.Attempts, x.Failures, x.FailingSince, x.LastError, x.NextAttemptAt = 0, 0, time.Time{}, "", time.Time{}
	x.RefreshedAt, x.UpdatedAt = now, now
	db.writeRecord(now, rec)
	return true, nil
}

// MarkReauthRequired is step 6's mark, fenced by the lease (I4); the
// tokens are kept.
func (db *DB) MarkReauthRequired(now time.Time, lease tokenbroker.Lease, re tokenbroker.Reauth, rec tokenbroker.Record) (bool, error) {
	r := db.fenced(lease)
	if db.Broken.NoMarkFence {
		r = db.links[lease.LinkID]
	}
	if r == nil || (r.l.Generation != lease.Generation && !db.Broken.NoMarkCAS) {
		return false, nil
	}
	if err := validRecord(rec); err != nil {
		return false, err
	}
	now = ms(now)
	x := &r.l
	x.State, x.ReauthReason, x.FailureReason = tokenbroker.LinkReauthRequired, re.Reason, re.Detail
	x.LeaseOwner, x.LeaseUntil, r.seen = "", time.Time{}, time.Time{}
	x.UpdatedAt = now
	db.writeRecord(now, rec)
	return true, nil
}

func (h *dbHealth) out(now time.Time) *tokenbroker.ProviderHealth {
	c := h.h
	c.Now = now
	return &c
}

// GetProviderHealth reads a provider's health; no row is healthy.
func (db *DB) GetProviderHealth(now time.Time, id string) *tokenbroker.ProviderHealth {
	now = ms(now)
	if h := db.health[id]; h != nil {
		return h.out(now)
	}
	return &tokenbroker.ProviderHealth{ProviderID: id, Now: now}
}

// ListProviderHealth returns every provider with a row, by id.
func (db *DB) ListProviderHealth(now time.Time) []*tokenbroker.ProviderHealth {
	var out []*tokenbroker.ProviderHealth
	for _, id := range slices.Sorted(maps.Keys(db.health)) {
		out = append(out, db.health[id].out(ms(now)))
	}
	return out
}

// RecordProviderFailure counts a failure and opens the circuit at the
// threshold (at once for a misconfiguration), unless it is already open
// for the same cause; f.Record goes with the change that makes it
// misconfigured.
func (db *DB) RecordProviderFailure(now time.Time, id string, f tokenbroker.ProviderFailure) (*tokenbroker.ProviderHealth, bool, error) {
	becomesMisconfigured := f.Misconfigured != "" && (db.health[id] == nil || db.health[id].h.Misconfigured == "")
	if err := validRecord(f.Record); err != nil && becomesMisconfigured {
		return nil, false, err
	}
	now = ms(now)
	h := db.health[id]
	if h == nil {
		h = &dbHealth{h: tokenbroker.ProviderHealth{ProviderID: id}}
		db.health[id] = h
	}
	h.h.Failures++
	h.h.UpdatedAt = now
	after := h.out(now)
	open := f.Misconfigured != "" || (f.Threshold > 0 && after.Failures >= f.Threshold)
	if !open || after.Open() && (f.Misconfigured == "" || after.Misconfigured != "") {
		return after, false, nil
	}
	if becomesMisconfigured {
		db.writeRecord(now, f.Record)
	}
	d := min(f.OpenFor<<min(after.Opens, 16), f.MaxOpenFor)
	if d <= 0 {
		d = f.MaxOpenFor
	}
	d = max(d, f.RetryAfter)
	h.h.Opens++
	h.h.OpenUntil = plus(now, d)
	h.probeOwner, h.h.ProbeUntil = "", time.Time{}
	if f.Misconfigured != "" {
		h.h.Misconfigured = f.Misconfigured
		if h.h.MisconfiguredSince.IsZero() {
			h.h.MisconfiguredSince = now
		}
	}
	return h.out(now), true, nil
}

// RecordProviderSuccess clears a troubled provider and returns its state
// before (nil when there was nothing to clear); rec goes with the
// clearing of a misconfiguration.
func (db *DB) RecordProviderSuccess(now time.Time, id string, rec tokenbroker.Record) (*tokenbroker.ProviderHealth, error) {
	now = ms(now)
	h := db.health[id]
	if h == nil {
		return nil, nil
	}
	before := h.out(now)
	if !before.Troubled() {
		return nil, nil
	}
	if before.Misconfigured != "" {
		if err := validRecord(rec); err != nil {
			return nil, err
		}
		db.writeRecord(now, rec)
	}
	h.h = tokenbroker.ProviderHealth{ProviderID: id, UpdatedAt: now}
	h.probeOwner = ""
	return before, nil
}

// AcquireProviderProbe lets one caller probe an open circuit whose time is
// up.
func (db *DB) AcquireProviderProbe(now time.Time, id, owner string, ttl time.Duration) bool {
	now = ms(now)
	h := db.health[id]
	if h == nil || h.h.OpenUntil.IsZero() || h.h.OpenUntil.After(now) ||
		(!h.h.ProbeUntil.IsZero() && !h.h.ProbeUntil.Before(now)) {
		return false
	}
	h.probeOwner, h.h.ProbeUntil = owner, plus(now, ttl)
	return true
}

// Audit returns the audit events in the order written.
func (db *DB) Audit() []tokenbroker.AuditEvent { return slices.Clone(db.audit) }

// Links returns a copy of every link, by id.
func (db *DB) Links() []*tokenbroker.Link {
	var out []*tokenbroker.Link
	for _, id := range slices.Sorted(maps.Keys(db.links)) {
		out = append(out, copyLink(&db.links[id].l))
	}
	return out
}
