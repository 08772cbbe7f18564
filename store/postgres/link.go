package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

const linkColumns = `id, user_id, provider_id, account_id, account_login,
	access_token, token_type, refresh_token, id_token, expiry, issued_at, scopes, extra, key_id,
	generation, state, reauth_reason, failure_reason, lease_owner, lease_until, lease_epoch,
	attempts, suspect, failures, failing_since, last_error, next_attempt_at,
	created_at, updated_at, refreshed_at, last_used_at`

// scanLink scans linkColumns followed by extra destinations (nil skips).
func scanLink(r pgx.Row, extra ...any) (*tokenbroker.Link, error) {
	var (
		l                                     tokenbroker.Link
		expiry, issued, leaseUntil, refreshed *time.Time
		lastUsed                              *time.Time
		failingSince, nextAttempt             *time.Time
		created, updated                      time.Time
		extraMap                              map[string]string
		leaseOwner                            *string
		state, reason                         string
	)
	dest := []any{&l.ID, &l.UserID, &l.ProviderID, &l.AccountID, &l.AccountLogin,
		&l.Token.AccessToken, &l.Token.TokenType, &l.Token.RefreshToken, &l.Token.IDToken,
		&expiry, &issued, &l.Token.Scopes, &extraMap, &l.KeyID,
		&l.Generation, &state, &reason, &l.FailureReason, &leaseOwner, &leaseUntil, &l.LeaseEpoch,
		&l.Attempts, &l.Suspect, &l.Failures, &failingSince, &l.LastError, &nextAttempt,
		&created, &updated, &refreshed, &lastUsed}
	if err := r.Scan(append(dest, extra...)...); err != nil {
		return nil, err
	}
	l.Token.Expiry = fromNull(expiry)
	l.Token.IssuedAt = fromNull(issued)
	l.Token.Scopes = nilIfEmpty(l.Token.Scopes)
	if len(extraMap) > 0 {
		l.Token.Extra = extraMap
	}
	l.State = tokenbroker.LinkState(state)
	l.ReauthReason = tokenbroker.ReauthReason(reason)
	if leaseOwner != nil {
		l.LeaseOwner = *leaseOwner
	}
	l.LeaseUntil = fromNull(leaseUntil)
	l.FailingSince = fromNull(failingSince)
	l.NextAttemptAt = fromNull(nextAttempt)
	l.CreatedAt, l.UpdatedAt = created.UTC(), updated.UTC()
	l.RefreshedAt = fromNull(refreshed)
	l.LastUsedAt = fromNull(lastUsed)
	return &l, nil
}

func scanLinks(rows pgx.Rows, err error) ([]*tokenbroker.Link, error) {
	return collect(rows, err, "links", func(r pgx.Row) (*tokenbroker.Link, error) { return scanLink(r) })
}

func extraJSON(m map[string]string) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("postgres: encode token extra: %w", err)
	}
	return string(b), nil
}

// GetLink implements [tokenbroker.LinkStore].
func (s *Store) GetLink(ctx context.Context, userID, providerID string) (*tokenbroker.Link, error) {
	l, err := scanLink(s.pool.QueryRow(ctx,
		`SELECT `+linkColumns+` FROM links WHERE user_id = $1 AND provider_id = $2`, userID, providerID))
	if err != nil {
		return nil, translate(err, "link")
	}
	return l, nil
}

// ListLinks implements [tokenbroker.LinkStore].
func (s *Store) ListLinks(ctx context.Context, userID string) ([]*tokenbroker.Link, error) {
	return scanLinks(s.pool.Query(ctx,
		`SELECT `+linkColumns+` FROM links WHERE user_id = $1 ORDER BY provider_id`, userID))
}

// PutLink implements [tokenbroker.LinkStore] with one upsert that also
// notifies, in a transaction that first locks the row it may replace (to
// know the state it leaves) and writes rec and the link's lifecycle event.
func (s *Store) PutLink(ctx context.Context, l *tokenbroker.Link, rec tokenbroker.Record) (*tokenbroker.Link, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	extra, err := extraJSON(l.Token.Extra)
	if err != nil {
		return nil, err
	}
	var out *tokenbroker.Link
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var prev *string
		err := tx.QueryRow(ctx, `SELECT state FROM links WHERE user_id = $1 AND provider_id = $2 FOR UPDATE`,
			l.UserID, l.ProviderID).Scan(&prev)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		var inserted bool
		out, err = scanLink(tx.QueryRow(ctx, `
			WITH u AS (
				INSERT INTO links (user_id, provider_id, account_id, account_login,
					access_token, token_type, refresh_token, id_token, expiry, issued_at, scopes, extra, key_id,
					refreshed_at, last_used_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $13, $10, $11::jsonb, $12, now(), now())
				ON CONFLICT (user_id, provider_id) DO UPDATE SET
					account_id            = excluded.account_id,
					account_login         = excluded.account_login,
					access_token          = excluded.access_token,
					token_type            = excluded.token_type,
					refresh_token         = excluded.refresh_token,
					id_token              = excluded.id_token,
					expiry                = excluded.expiry,
					issued_at             = excluded.issued_at,
					scopes                = excluded.scopes,
					extra                 = excluded.extra,
					key_id                = excluded.key_id,
					generation            = links.generation + 1,
					state                 = 'active',
					suspect               = '',`+newGeneration+`,
					updated_at            = now(),
					refreshed_at          = now(),
					last_used_at          = now()
				RETURNING `+linkColumns+`, (xmax = 0) AS inserted
			)
			SELECT `+linkColumns+`, inserted, pg_notify('`+Channel+`', u.id::text) FROM u`,
			l.UserID, l.ProviderID, l.AccountID, l.AccountLogin,
			l.Token.AccessToken, l.Token.TokenType, l.Token.RefreshToken, l.Token.IDToken,
			nullTime(l.Token.Expiry), nonNil(l.Token.Scopes), extra, l.KeyID, nullTime(l.Token.IssuedAt)), &inserted, nil)
		if err != nil {
			return err
		}
		// The state replaced: none for an insert; a row another
		// transaction inserted after the lock above found nothing was
		// created active.
		replaced := tokenbroker.LinkActive
		switch {
		case inserted:
			replaced = ""
		case prev != nil:
			replaced = tokenbroker.LinkState(*prev)
		}
		if ev, ok := tokenbroker.PutLinkEvent(replaced, out); ok {
			rec.Events = append(rec.Events[:len(rec.Events):len(rec.Events)], ev)
		}
		return writeRecord(ctx, tx, rec)
	})
	if err != nil {
		return nil, translate(err, "link")
	}
	s.hub.Signal(out.ID)
	return out, nil
}

// DeleteLink implements [tokenbroker.LinkStore].
func (s *Store) DeleteLink(ctx context.Context, userID, providerID string, rec tokenbroker.Record) error {
	var id int64
	err := s.inTx(ctx, rec, func(q querier) error {
		return q.QueryRow(ctx, `
			WITH u AS (DELETE FROM links WHERE user_id = $1 AND provider_id = $2 RETURNING id)
			SELECT u.id, pg_notify('`+Channel+`', u.id::text) FROM u`, userID, providerID).Scan(&id, nil)
	})
	if err != nil {
		return translate(err, "link")
	}
	s.hub.Signal(id)
	return nil
}

// AcquireLease implements [tokenbroker.LinkStore]: one conditional UPDATE
// judged on the database clock, so that of any number of concurrent
// callers in any number of replicas exactly one wins a generation's lease
// (I1). The row is locked by the statement's own CTE, so the previous
// owner it reports is the one it replaced. A lost acquisition runs a
// second statement that starts the grace of an expired, unreleased lease
// and reports the row. A negative TTL gives a lease that has already
// expired.
func (s *Store) AcquireLease(ctx context.Context, r tokenbroker.LeaseRequest) (*tokenbroker.LeaseGrant, error) {
	if r.Owner == "" {
		return nil, tokenbroker.Errorf(tokenbroker.EINVALID, "lease owner must not be empty")
	}
	g := &tokenbroker.LeaseGrant{}
	var (
		prevOwner  *string
		until, now time.Time
		wonState   string
		failing    *time.Time
	)
	err := s.pool.QueryRow(ctx, `
		WITH prev AS (SELECT id, lease_owner FROM links WHERE id = $1 FOR UPDATE)
		UPDATE links l SET
			lease_owner           = $3,
			lease_until           = now() + $4 * interval '1 millisecond',
			lease_epoch           = l.lease_epoch + 1,
			lease_expired_seen_at = NULL,
			attempts              = l.attempts + 1,
			suspect               = CASE WHEN l.lease_owner IS NOT NULL THEN 'holder_died' ELSE l.suspect END
		FROM prev
		WHERE l.id = prev.id AND l.generation = $2 AND l.state IN ('active', 'degraded', 'idle')
		  AND (l.next_attempt_at IS NULL OR l.next_attempt_at <= now())
		  AND (l.lease_owner IS NULL OR (l.lease_until < now()
		       AND l.lease_expired_seen_at IS NOT NULL AND l.lease_expired_seen_at + $5 * interval '1 millisecond' <= now()))
		RETURNING l.lease_epoch, l.attempts, l.suspect, l.lease_until, prev.lease_owner, l.state, l.failing_since, now()`,
		r.LinkID, r.Generation, r.Owner, r.TTL.Milliseconds(), r.Grace.Milliseconds()).
		Scan(&g.Lease.Epoch, &g.Attempt, &g.Suspect, &until, &prevOwner, &wonState, &failing, &now)
	switch {
	case err == nil:
		g.Won = true
		g.Lease.LinkID, g.Lease.Generation, g.Lease.Owner = r.LinkID, r.Generation, r.Owner
		if prevOwner != nil {
			g.PreviousOwner = *prevOwner
		}
		g.Generation, g.State, g.LeaseOwner, g.LeaseUntil, g.Now = r.Generation, tokenbroker.LinkState(wonState), r.Owner, until.UTC(), now.UTC()
		g.FailingSince = fromNull(failing)
		return g, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return nil, translate(err, "link lease")
	}
	// Lost. An expired, unreleased lease starts its grace now, the first
	// time anybody finds it expired; the row is reported as it was.
	var (
		owner                  *string
		leaseUntil, seen, next *time.Time
		state                  string
	)
	err = s.pool.QueryRow(ctx, `
		WITH seen AS (
			UPDATE links SET lease_expired_seen_at = now()
			WHERE id = $1 AND lease_owner IS NOT NULL AND lease_until < now() AND lease_expired_seen_at IS NULL
			RETURNING lease_expired_seen_at
		)
		SELECT generation, state, lease_owner, lease_until,
			COALESCE(lease_expired_seen_at, (SELECT lease_expired_seen_at FROM seen)),
			next_attempt_at, failing_since, attempts, suspect, now()
		FROM links WHERE id = $1`, r.LinkID).
		Scan(&g.Generation, &state, &owner, &leaseUntil, &seen, &next, &failing, &g.Attempt, &g.Suspect, &now)
	if err != nil {
		return nil, translate(err, "link lease")
	}
	g.State = tokenbroker.LinkState(state)
	if owner != nil {
		g.LeaseOwner = *owner
	}
	g.LeaseUntil, g.NextAttemptAt, g.Now = fromNull(leaseUntil), fromNull(next), now.UTC()
	g.FailingSince = fromNull(failing)
	if seen != nil {
		g.GraceUntil = seen.UTC().Add(r.Grace)
	}
	return g, nil
}

// newGeneration is what the two writes of a new generation (PutLink's
// upsert of an existing link, and CommitRefresh) set besides the token
// and the state: a new generation starts with no lease, no attempt, no
// failure and no backoff (docs/design.md, "Protocol v2").
const newGeneration = `
	reauth_reason         = '',
	failure_reason        = '',
	lease_owner           = NULL,
	lease_until           = NULL,
	lease_expired_seen_at = NULL,
	attempts              = 0,
	failures              = 0,
	failing_since         = NULL,
	last_error            = '',
	next_attempt_at       = NULL`

// leaseFence is the condition of every write of a lease holder: the row
// still carries its owner and epoch ($1 id, $2 owner, $3 epoch).
const leaseFence = `id = $1 AND lease_owner = $2 AND lease_epoch = $3`

// RenewLease implements [tokenbroker.LinkStore].
func (s *Store) RenewLease(ctx context.Context, lease tokenbroker.Lease, ttl time.Duration) (bool, error) {
	tag, err := s.pool.Exec(ctx, `
		UPDATE links SET lease_until = now() + $4 * interval '1 millisecond', lease_expired_seen_at = NULL
		WHERE `+leaseFence, lease.LinkID, lease.Owner, lease.Epoch, ttl.Milliseconds())
	return won(tag, err, "link lease")
}

// ReleaseLease implements [tokenbroker.LinkStore]: only the holder's
// lease is given back, with the attempt's outcome.
func (s *Store) ReleaseLease(ctx context.Context, lease tokenbroker.Lease, r tokenbroker.Release, rec tokenbroker.Record) (bool, error) {
	return s.writeIf(ctx, lease.LinkID, rec, "link lease", `
		WITH u AS (
			UPDATE links SET
				lease_owner = NULL, lease_until = NULL, lease_expired_seen_at = NULL,
				suspect         = CASE WHEN $4 = 'uncertain' AND suspect = '' THEN 'answer_lost' ELSE suspect END,
				failures        = CASE WHEN $4 <> '' THEN failures + 1 ELSE failures END,
				failing_since   = CASE WHEN $4 <> '' AND failing_since IS NULL THEN now() ELSE failing_since END,
				last_error      = CASE WHEN $4 <> '' THEN $5 ELSE last_error END,
				next_attempt_at = CASE WHEN $6 > 0 THEN now() + $6 * interval '1 millisecond' ELSE next_attempt_at END,
				state           = CASE WHEN $7 AND $4 <> '' AND state = 'active' THEN 'degraded' ELSE state END,
				updated_at      = CASE WHEN $7 AND $4 <> '' AND state = 'active' THEN now() ELSE updated_at END
			WHERE `+leaseFence+`
			RETURNING id
		) `+notifyFrom,
		lease.LinkID, lease.Owner, lease.Epoch, string(r.Class), r.Error, r.Backoff.Milliseconds(), r.Degrade)
}

// CommitRefresh implements [tokenbroker.LinkStore]: a compare-and-swap on
// the generation fenced by the lease, in one UPDATE (I3), with the NOTIFY
// in the same statement.
func (s *Store) CommitRefresh(ctx context.Context, lease tokenbroker.Lease, l *tokenbroker.Link, rec tokenbroker.Record) (bool, error) {
	extra, err := extraJSON(l.Token.Extra)
	if err != nil {
		return false, err
	}
	return s.writeIf(ctx, lease.LinkID, rec, "link", `
		WITH u AS (
			UPDATE links SET
				access_token          = $5,
				token_type            = $6,
				refresh_token         = $7,
				id_token              = $8,
				expiry                = $9,
				issued_at             = $15,
				scopes                = $10,
				extra                 = $11::jsonb,
				key_id                = $12,
				account_id            = CASE WHEN $13 = '' THEN account_id ELSE $13 END,
				account_login         = CASE WHEN $14 = '' THEN account_login ELSE $14 END,
				generation            = generation + 1,
				state                 = 'active',
				suspect               = $16,`+newGeneration+`,
				refreshed_at          = now(),
				updated_at            = now()
			WHERE `+leaseFence+` AND generation = $4
			RETURNING id
		) `+notifyFrom,
		lease.LinkID, lease.Owner, lease.Epoch, lease.Generation,
		l.Token.AccessToken, l.Token.TokenType, l.Token.RefreshToken, l.Token.IDToken,
		nullTime(l.Token.Expiry), nonNil(l.Token.Scopes), extra, l.KeyID,
		l.AccountID, l.AccountLogin, nullTime(l.Token.IssuedAt), l.Suspect)
}

// MarkReauthRequired implements [tokenbroker.LinkStore]: fenced by the
// lease, tokens untouched (I4).
func (s *Store) MarkReauthRequired(ctx context.Context, lease tokenbroker.Lease, r tokenbroker.Reauth, rec tokenbroker.Record) (bool, error) {
	return s.writeIf(ctx, lease.LinkID, rec, "link", `
		WITH u AS (
			UPDATE links SET state = 'reauth_required', reauth_reason = $5, failure_reason = $6,
				lease_owner = NULL, lease_until = NULL, lease_expired_seen_at = NULL, updated_at = now()
			WHERE `+leaseFence+` AND generation = $4
			RETURNING id
		) `+notifyFrom,
		lease.LinkID, lease.Owner, lease.Epoch, lease.Generation, string(r.Reason), r.Detail)
}

// querier is what a write needs of a pool or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// inTx runs fn on the pool when rec is empty (one statement), else in one
// transaction that also writes rec.
func (s *Store) inTx(ctx context.Context, rec tokenbroker.Record, fn func(q querier) error) error {
	if rec.Empty() {
		return fn(s.pool)
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return writeRecord(ctx, tx, rec)
	})
}

// writeRecord writes rec through tx: the audit events, then the webhook
// events (a copy, whose ids are filled in).
func writeRecord(ctx context.Context, tx pgx.Tx, rec tokenbroker.Record) error {
	if err := insertAudit(ctx, tx, rec.Audit); err != nil {
		return err
	}
	return insertEvents(ctx, tx, slices.Clone(rec.Events))
}

// writeIf runs the conditional, notifying statement q and, if it changed
// a row, writes rec in the same transaction. It reports whether it won
// and then wakes this process's subscribers of id at once; other replicas
// learn of it from the NOTIFY, delivered at commit.
func (s *Store) writeIf(ctx context.Context, id int64, rec tokenbroker.Record, what, q string, args ...any) (bool, error) {
	ok := false
	run := func(qr querier) (bool, error) {
		tag, err := qr.Exec(ctx, q, args...)
		if err != nil {
			return false, err
		}
		return tag.RowsAffected() > 0, nil
	}
	var err error
	if rec.Empty() {
		ok, err = run(s.pool)
	} else {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			var err error
			if ok, err = run(tx); err != nil || !ok {
				return err
			}
			return writeRecord(ctx, tx, rec)
		})
	}
	if err != nil {
		return false, translate(err, what)
	}
	if ok {
		s.hub.Signal(id)
	}
	return ok, nil
}

// ListLinksExpiringBefore implements [tokenbroker.LinkStore] on the
// partial index links_refresh_expiry.
func (s *Store) ListLinksExpiringBefore(ctx context.Context, t time.Time, after tokenbroker.ExpiryCursor, limit int) ([]*tokenbroker.Link, error) {
	afterExpiry := after.Expiry
	if afterExpiry.IsZero() {
		afterExpiry = time.Unix(0, 0) // before any real expiry: from the start
		after.ID = math.MinInt64
	}
	return scanLinks(s.pool.Query(ctx, expiringSQL, t, afterExpiry, after.ID, limit))
}

// expiringSQL is ListLinksExpiringBefore's page: read in order from
// links_refresh_expiry, so a page costs its rows, not the fleet's
// (TestDueLinksScanUsesIndex).
const expiringSQL = `
	SELECT ` + linkColumns + ` FROM links
	WHERE state IN ('active', 'degraded') AND expiry IS NOT NULL AND expiry < $1
	  AND (expiry, id) > ($2, $3)
	ORDER BY expiry, id LIMIT $4`

// ListLinksNotSealedBy implements [tokenbroker.LinkStore].
func (s *Store) ListLinksNotSealedBy(ctx context.Context, keyID string, afterID int64, limit int) ([]*tokenbroker.Link, error) {
	return scanLinks(s.pool.Query(ctx, `
		SELECT `+linkColumns+` FROM links
		WHERE id > $1 AND key_id <> $2
		ORDER BY id LIMIT $3`, afterID, keyID, limit))
}

// ResealLink implements [tokenbroker.LinkStore]: CAS on the generation,
// which it does not bump, so a concurrent refresh's commit still wins.
func (s *Store) ResealLink(ctx context.Context, l *tokenbroker.Link) (bool, error) {
	extra, err := extraJSON(l.Token.Extra)
	if err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx, `
		UPDATE links SET access_token = $3, refresh_token = $4, id_token = $5, extra = $6::jsonb, key_id = $7
		WHERE id = $1 AND generation = $2`,
		l.ID, l.Generation, l.Token.AccessToken, l.Token.RefreshToken, l.Token.IDToken, extra, l.KeyID)
	return won(tag, err, "link")
}

// CountSealedByKey implements [tokenbroker.LinkStore].
func (s *Store) CountSealedByKey(ctx context.Context) (map[string]int64, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT key_id, count(*) FROM (
			SELECT key_id FROM links
			UNION ALL
			SELECT key_id FROM auth_requests WHERE expires_at > now()
		) k GROUP BY key_id`)
	if err != nil {
		return nil, translate(err, "key counts")
	}
	defer rows.Close()
	out := make(map[string]int64)
	for rows.Next() {
		var k string
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return nil, translate(err, "key counts")
		}
		out[k] = n
	}
	return out, translate(rows.Err(), "key counts")
}

// won reports whether a conditional statement changed (or, for a
// notifying CTE, selected) a row.
func won(tag pgconn.CommandTag, err error, what string) (bool, error) {
	if err != nil {
		return false, translate(err, what)
	}
	return tag.RowsAffected() > 0, nil
}
