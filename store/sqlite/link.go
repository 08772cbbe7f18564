package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

const linkColumns = `id, user_id, provider_id, account_id, account_login,
	access_token, token_type, refresh_token, id_token, expiry, issued_at, scopes, extra, key_id,
	generation, state, reauth_reason, failure_reason, lease_owner, lease_until, lease_epoch,
	attempts, suspect, failures, failing_since, last_error, next_attempt_at,
	created_at, updated_at, refreshed_at, last_used_at`

func scanLink(r rowScanner) (*tokenbroker.Link, error) {
	var (
		l                                                  tokenbroker.Link
		expiry, issued, leaseUntil, created, updated, refr sql.NullInt64
		lastUsed                                           sql.NullInt64
		failingSince, nextAttempt                          sql.NullInt64
		scopes, extra                                      string
		leaseOwner                                         sql.NullString
		state, reason                                      string
	)
	err := r.Scan(&l.ID, &l.UserID, &l.ProviderID, &l.AccountID, &l.AccountLogin,
		&l.Token.AccessToken, &l.Token.TokenType, &l.Token.RefreshToken, &l.Token.IDToken,
		&expiry, &issued, &scopes, &extra, &l.KeyID,
		&l.Generation, &state, &reason, &l.FailureReason, &leaseOwner, &leaseUntil, &l.LeaseEpoch,
		&l.Attempts, &l.Suspect, &l.Failures, &failingSince, &l.LastError, &nextAttempt,
		&created, &updated, &refr, &lastUsed)
	if err != nil {
		return nil, err
	}
	l.Token.Expiry = fromMS(expiry)
	l.Token.IssuedAt = fromMS(issued)
	if err := unmarshalStrings(scopes, &l.Token.Scopes); err != nil {
		return nil, err
	}
	if err := unmarshalMap(extra, &l.Token.Extra); err != nil {
		return nil, err
	}
	l.State = tokenbroker.LinkState(state)
	l.ReauthReason = tokenbroker.ReauthReason(reason)
	l.LeaseOwner = leaseOwner.String
	l.LeaseUntil = fromMS(leaseUntil)
	l.FailingSince = fromMS(failingSince)
	l.NextAttemptAt = fromMS(nextAttempt)
	l.CreatedAt = fromMS(created)
	l.UpdatedAt = fromMS(updated)
	l.RefreshedAt = fromMS(refr)
	l.LastUsedAt = fromMS(lastUsed)
	return &l, nil
}

func scanLinks(rows *sql.Rows) ([]*tokenbroker.Link, error) {
	defer rows.Close()
	var out []*tokenbroker.Link
	for rows.Next() {
		l, err := scanLink(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// GetLink implements [tokenbroker.LinkStore].
func (s *Store) GetLink(ctx context.Context, userID, providerID string) (*tokenbroker.Link, error) {
	l, err := scanLink(s.rdb.QueryRowContext(ctx,
		`SELECT `+linkColumns+` FROM links WHERE user_id = ? AND provider_id = ?`, userID, providerID))
	if err != nil {
		return nil, translate(err, "link")
	}
	return l, nil
}

// ListLinks implements [tokenbroker.LinkStore].
func (s *Store) ListLinks(ctx context.Context, userID string) ([]*tokenbroker.Link, error) {
	rows, err := s.rdb.QueryContext(ctx,
		`SELECT `+linkColumns+` FROM links WHERE user_id = ? ORDER BY provider_id`, userID)
	if err != nil {
		return nil, translate(err, "links")
	}
	links, err := scanLinks(rows)
	return links, translate(err, "links")
}

// PutLink implements [tokenbroker.LinkStore] with one upsert, and rec and
// the link's lifecycle event in the same (immediate) transaction, which
// also reads the state the upsert replaces.
func (s *Store) PutLink(ctx context.Context, l *tokenbroker.Link, rec tokenbroker.Record) (*tokenbroker.Link, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	scopes, extra, err := marshalToken(&l.Token)
	if err != nil {
		return nil, err
	}
	var out *tokenbroker.Link
	err = s.write(ctx, "link", func(tx *sql.Tx) error {
		var prev string
		err := tx.QueryRowContext(ctx, `SELECT state FROM links WHERE user_id = ? AND provider_id = ?`,
			l.UserID, l.ProviderID).Scan(&prev)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		out, err = scanLink(tx.QueryRowContext(ctx, `
			INSERT INTO links (user_id, provider_id, account_id, account_login,
				access_token, token_type, refresh_token, id_token, expiry, issued_at, scopes, extra, key_id,
				generation, state, failure_reason, created_at, updated_at, refreshed_at, last_used_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 'active', '', `+nowMS+`, `+nowMS+`, `+nowMS+`, `+nowMS+`)
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
				updated_at            = excluded.updated_at,
				refreshed_at          = excluded.refreshed_at,
				last_used_at          = excluded.last_used_at
			RETURNING `+linkColumns,
			l.UserID, l.ProviderID, l.AccountID, l.AccountLogin,
			l.Token.AccessToken, l.Token.TokenType, l.Token.RefreshToken, l.Token.IDToken,
			toMS(l.Token.Expiry), toMS(l.Token.IssuedAt), scopes, extra, l.KeyID))
		if err != nil {
			return err
		}
		if ev, ok := tokenbroker.PutLinkEvent(tokenbroker.LinkState(prev), out); ok {
			rec.Events = append(rec.Events[:len(rec.Events):len(rec.Events)], ev)
		}
		return writeRecord(ctx, tx, rec)
	})
	if err != nil {
		return nil, err
	}
	s.hub.Signal(out.ID)
	return out, nil
}

// DeleteLink implements [tokenbroker.LinkStore].
func (s *Store) DeleteLink(ctx context.Context, userID, providerID string, rec tokenbroker.Record) error {
	var id int64
	err := s.write(ctx, "link", func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx,
			`DELETE FROM links WHERE user_id = ? AND provider_id = ? RETURNING id`, userID, providerID).Scan(&id)
		if err != nil {
			return err
		}
		return writeRecord(ctx, tx, rec)
	})
	if err != nil {
		return err
	}
	s.hub.Signal(id)
	return nil
}

// AcquireLease implements [tokenbroker.LinkStore]. The conditional UPDATE
// decides, judged on the database clock, so that of any number of
// concurrent callers for one generation exactly one wins (I1); it runs in
// one immediate transaction with the read that reports the row, so the
// report and the decision agree. A negative TTL gives a lease that has
// already expired.
func (s *Store) AcquireLease(ctx context.Context, r tokenbroker.LeaseRequest) (*tokenbroker.LeaseGrant, error) {
	if r.Owner == "" {
		return nil, tokenbroker.Errorf(tokenbroker.EINVALID, "lease owner must not be empty")
	}
	g := &tokenbroker.LeaseGrant{}
	err := s.write(ctx, "link lease", func(tx *sql.Tx) error {
		var (
			state                           string
			owner                           sql.NullString
			until, seen, next, failing, now sql.NullInt64
			epoch                           int64
		)
		err := tx.QueryRowContext(ctx, `
			SELECT generation, state, lease_owner, lease_until, lease_expired_seen_at, next_attempt_at,
				failing_since, attempts, suspect, lease_epoch, `+nowMS+`
			FROM links WHERE id = ?`, r.LinkID).Scan(&g.Generation, &state, &owner, &until, &seen, &next,
			&failing, &g.Attempt, &g.Suspect, &epoch, &now)
		if err != nil {
			return err
		}
		g.State = tokenbroker.LinkState(state)
		g.LeaseOwner, g.LeaseUntil, g.NextAttemptAt, g.Now = owner.String, fromMS(until), fromMS(next), fromMS(now)
		g.FailingSince = fromMS(failing)
		if seen.Valid {
			g.GraceUntil = fromMS(seen).Add(r.Grace)
		}
		// The one condition that decides (I1): the generation, the state,
		// the backoff, and a lease that is free or expired past its grace.
		err = tx.QueryRowContext(ctx, `
			UPDATE links SET
				lease_owner           = ?,
				lease_until           = `+nowMS+` + ?,
				lease_epoch           = lease_epoch + 1,
				lease_expired_seen_at = NULL,
				attempts              = attempts + 1,
				suspect               = CASE WHEN lease_owner IS NOT NULL THEN 'holder_died' ELSE suspect END
			WHERE id = ? AND generation = ? AND state IN ('active', 'degraded', 'idle')
			  AND (next_attempt_at IS NULL OR next_attempt_at <= `+nowMS+`)
			  AND (lease_owner IS NULL OR (lease_until < `+nowMS+`
			       AND lease_expired_seen_at IS NOT NULL AND lease_expired_seen_at + ? <= `+nowMS+`))
			RETURNING lease_epoch, attempts, suspect, lease_until`,
			r.Owner, r.TTL.Milliseconds(), r.LinkID, r.Generation, r.Grace.Milliseconds()).
			Scan(&epoch, &g.Attempt, &g.Suspect, &until)
		switch {
		case err == nil:
			g.Won = true
			g.PreviousOwner = owner.String
			g.Lease = tokenbroker.Lease{LinkID: r.LinkID, Generation: r.Generation, Owner: r.Owner, Epoch: epoch}
			g.LeaseOwner, g.LeaseUntil, g.GraceUntil = r.Owner, fromMS(until), time.Time{}
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		// Lost. An expired, unreleased lease starts its grace now, the
		// first time anybody finds it expired.
		if owner.Valid && until.Valid && until.Int64 < now.Int64 && !seen.Valid {
			if _, err := tx.ExecContext(ctx, `
				UPDATE links SET lease_expired_seen_at = ?
				WHERE id = ? AND lease_epoch = ? AND lease_expired_seen_at IS NULL`, now.Int64, r.LinkID, epoch); err != nil {
				return err
			}
			g.GraceUntil = fromMS(now).Add(r.Grace)
		}
		return nil
	})
	if err != nil {
		return nil, err
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
// still carries its owner and epoch.
const leaseFence = `id = ? AND lease_owner = ? AND lease_epoch = ?`

// RenewLease implements [tokenbroker.LinkStore].
func (s *Store) RenewLease(ctx context.Context, lease tokenbroker.Lease, ttl time.Duration) (bool, error) {
	res, err := s.wdb.ExecContext(ctx, `
		UPDATE links SET lease_until = `+nowMS+` + ?, lease_expired_seen_at = NULL
		WHERE `+leaseFence, ttl.Milliseconds(), lease.LinkID, lease.Owner, lease.Epoch)
	return affected(res, err, "link lease")
}

// ReleaseLease implements [tokenbroker.LinkStore]: only the holder's
// lease is given back, with the attempt's outcome.
func (s *Store) ReleaseLease(ctx context.Context, lease tokenbroker.Lease, r tokenbroker.Release, rec tokenbroker.Record) (bool, error) {
	ok, err := s.writeIf(ctx, "link lease", rec, `
		UPDATE links SET
			lease_owner = NULL, lease_until = NULL, lease_expired_seen_at = NULL,
			suspect         = CASE WHEN ? = 'uncertain' AND suspect = '' THEN 'answer_lost' ELSE suspect END,
			failures        = CASE WHEN ? <> '' THEN failures + 1 ELSE failures END,
			failing_since   = CASE WHEN ? <> '' AND failing_since IS NULL THEN `+nowMS+` ELSE failing_since END,
			last_error      = CASE WHEN ? <> '' THEN ? ELSE last_error END,
			next_attempt_at = CASE WHEN ? > 0 THEN `+nowMS+` + ? ELSE next_attempt_at END,
			state           = CASE WHEN ? AND ? <> '' AND state = 'active' THEN 'degraded' ELSE state END,
			updated_at      = CASE WHEN ? AND ? <> '' AND state = 'active' THEN `+nowMS+` ELSE updated_at END
		WHERE `+leaseFence,
		r.Class, r.Class, r.Class, r.Class, r.Error, r.Backoff.Milliseconds(), r.Backoff.Milliseconds(),
		r.Degrade, r.Class, r.Degrade, r.Class,
		lease.LinkID, lease.Owner, lease.Epoch)
	if ok {
		s.hub.Signal(lease.LinkID)
	}
	return ok, err
}

// CommitRefresh implements [tokenbroker.LinkStore]: a compare-and-swap on
// the generation fenced by the lease, in one UPDATE (I3).
func (s *Store) CommitRefresh(ctx context.Context, lease tokenbroker.Lease, l *tokenbroker.Link, rec tokenbroker.Record) (bool, error) {
	scopes, extra, err := marshalToken(&l.Token)
	if err != nil {
		return false, err
	}
	ok, err := s.writeIf(ctx, "link", rec, `
		UPDATE links SET
			access_token          = ?,
			token_type            = ?,
			refresh_token         = ?,
			id_token              = ?,
			expiry                = ?,
			issued_at             = ?,
			scopes                = ?,
			extra                 = ?,
			key_id                = ?,
			account_id            = CASE WHEN ? = '' THEN account_id ELSE ? END,
			account_login         = CASE WHEN ? = '' THEN account_login ELSE ? END,
			generation            = generation + 1,
			state                 = 'active',
			suspect               = ?,`+newGeneration+`,
			refreshed_at          = `+nowMS+`,
			updated_at            = `+nowMS+`
		WHERE `+leaseFence+` AND generation = ?`,
		l.Token.AccessToken, l.Token.TokenType, l.Token.RefreshToken, l.Token.IDToken,
		toMS(l.Token.Expiry), toMS(l.Token.IssuedAt), scopes, extra, l.KeyID,
		l.AccountID, l.AccountID, l.AccountLogin, l.AccountLogin, l.Suspect,
		lease.LinkID, lease.Owner, lease.Epoch, lease.Generation)
	if ok {
		s.hub.Signal(lease.LinkID)
	}
	return ok, err
}

// MarkReauthRequired implements [tokenbroker.LinkStore]: fenced by the
// lease, tokens untouched (I4).
func (s *Store) MarkReauthRequired(ctx context.Context, lease tokenbroker.Lease, r tokenbroker.Reauth, rec tokenbroker.Record) (bool, error) {
	ok, err := s.writeIf(ctx, "link", rec, `
		UPDATE links SET state = 'reauth_required', reauth_reason = ?, failure_reason = ?,
			lease_owner = NULL, lease_until = NULL, lease_expired_seen_at = NULL, updated_at = `+nowMS+`
		WHERE `+leaseFence+` AND generation = ?`,
		string(r.Reason), r.Detail, lease.LinkID, lease.Owner, lease.Epoch, lease.Generation)
	if ok {
		s.hub.Signal(lease.LinkID)
	}
	return ok, err
}

// writeRecord writes rec through tx: the audit events, then the webhook
// events (a copy, whose ids are filled in).
func writeRecord(ctx context.Context, tx *sql.Tx, rec tokenbroker.Record) error {
	if err := insertAudit(ctx, tx, rec.Audit); err != nil {
		return err
	}
	return insertEvents(ctx, tx, slices.Clone(rec.Events))
}

// write runs fn in one (immediate) transaction on the writer connection.
func (s *Store) write(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return translate(err, what)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return translate(err, what)
	}
	return translate(tx.Commit(), what)
}

// writeIf runs the conditional statement q and, if it changed a row, writes
// rec in the same transaction. It reports whether the statement won.
func (s *Store) writeIf(ctx context.Context, what string, rec tokenbroker.Record, q string, args ...any) (bool, error) {
	if rec.Empty() {
		res, err := s.wdb.ExecContext(ctx, q, args...)
		return affected(res, err, what)
	}
	won := false
	err := s.write(ctx, what, func(tx *sql.Tx) error {
		n, err := rowsAffected(tx.ExecContext(ctx, q, args...))
		if err != nil || n == 0 {
			return err
		}
		won = true
		return writeRecord(ctx, tx, rec)
	})
	return won, err
}

// ListLinksExpiringBefore implements [tokenbroker.LinkStore] on the
// partial index links_refresh_expiry.
func (s *Store) ListLinksExpiringBefore(ctx context.Context, t time.Time, after tokenbroker.ExpiryCursor, limit int) ([]*tokenbroker.Link, error) {
	afterMS := int64(math.MinInt64)
	if !after.Expiry.IsZero() {
		afterMS = after.Expiry.UnixMilli()
	}
	rows, err := s.rdb.QueryContext(ctx, expiringSQL, t.UnixMilli(), afterMS, after.ID, limit)
	if err != nil {
		return nil, translate(err, "links")
	}
	links, err := scanLinks(rows)
	return links, translate(err, "links")
}

// expiringSQL is ListLinksExpiringBefore's page: read in order from
// links_refresh_expiry, so a page costs its rows, not the fleet's
// (TestDueLinksScanUsesIndex). INDEXED BY, because without statistics
// (nothing runs ANALYZE on a deployment's database) the planner prefers
// links_state_user for the state IN (...) and sorts every active link:
// with a million links a page took half a second.
const expiringSQL = `
	SELECT ` + linkColumns + ` FROM links INDEXED BY links_refresh_expiry
	WHERE state IN ('active', 'degraded') AND expiry IS NOT NULL AND expiry < ?
	  AND (expiry, id) > (?, ?)
	ORDER BY expiry, id LIMIT ?`

// ListLinksNotSealedBy implements [tokenbroker.LinkStore].
func (s *Store) ListLinksNotSealedBy(ctx context.Context, keyID string, afterID int64, limit int) ([]*tokenbroker.Link, error) {
	rows, err := s.rdb.QueryContext(ctx, `
		SELECT `+linkColumns+` FROM links
		WHERE id > ? AND key_id <> ?
		ORDER BY id LIMIT ?`, afterID, keyID, limit)
	if err != nil {
		return nil, translate(err, "links")
	}
	links, err := scanLinks(rows)
	return links, translate(err, "links")
}

// ResealLink implements [tokenbroker.LinkStore]: CAS on the generation,
// which it does not bump, so a concurrent refresh's commit still wins.
func (s *Store) ResealLink(ctx context.Context, l *tokenbroker.Link) (bool, error) {
	_, extra, err := marshalToken(&l.Token)
	if err != nil {
		return false, err
	}
	res, err := s.wdb.ExecContext(ctx, `
		UPDATE links SET access_token = ?, refresh_token = ?, id_token = ?, extra = ?, key_id = ?
		WHERE id = ? AND generation = ?`,
		l.Token.AccessToken, l.Token.RefreshToken, l.Token.IDToken, extra, l.KeyID,
		l.ID, l.Generation)
	return affected(res, err, "link")
}

// CountSealedByKey implements [tokenbroker.LinkStore].
func (s *Store) CountSealedByKey(ctx context.Context) (map[string]int64, error) {
	rows, err := s.rdb.QueryContext(ctx, `
		SELECT key_id, count(*) FROM (
			SELECT key_id FROM links
			UNION ALL
			SELECT key_id FROM auth_requests WHERE expires_at > `+nowMS+`
		) GROUP BY key_id`)
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

// affected reports whether an UPDATE changed a row.
func affected(res sql.Result, err error, what string) (bool, error) {
	n, err := rowsAffected(res, err)
	if err != nil {
		return false, translate(err, what)
	}
	return n > 0, nil
}

// rowsAffected is the count of rows a statement changed.
func rowsAffected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func marshalToken(t *tokenbroker.Token) (scopes, extra string, err error) {
	if scopes, err = marshalStrings(t.Scopes); err != nil {
		return "", "", err
	}
	if len(t.Extra) == 0 {
		return scopes, "{}", nil
	}
	b, err := json.Marshal(t.Extra)
	if err != nil {
		return "", "", fmt.Errorf("sqlite: encode token extra: %w", err)
	}
	return scopes, string(b), nil
}

func marshalStrings(v []string) (string, error) {
	if len(v) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("sqlite: encode list: %w", err)
	}
	return string(b), nil
}

func unmarshalStrings(s string, v *[]string) error {
	if s == "" || s == "[]" {
		*v = nil
		return nil
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("sqlite: decode list: %w", err)
	}
	return nil
}

func unmarshalMap(s string, v *map[string]string) error {
	if s == "" || s == "{}" {
		*v = nil
		return nil
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("sqlite: decode map: %w", err)
	}
	return nil
}
