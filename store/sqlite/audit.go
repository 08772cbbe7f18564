package sqlite

import (
	"context"
	"database/sql"
	"strings"
	"time"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

// AppendAudit implements [tokenbroker.AuditStore]: one transaction for the
// batch. An event without Time gets the database clock.
func (s *Store) AppendAudit(ctx context.Context, events []tokenbroker.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	for _, e := range events {
		if e.Action == "" {
			return tokenbroker.Errorf(tokenbroker.EINVALID, "an audit event needs an action")
		}
	}
	return s.write(ctx, "audit events", func(tx *sql.Tx) error { return insertAudit(ctx, tx, events) })
}

// insertAudit writes events with tx, in multi-row INSERTs: the audit
// trail is written once per token handed out, so per-statement overhead
// is the hot path's largest write cost. An event without Time gets the
// database clock.
func insertAudit(ctx context.Context, tx *sql.Tx, events []tokenbroker.AuditEvent) error {
	const rowsPerInsert = 100
	args := make([]any, 0, 9*min(rowsPerInsert, len(events)))
	var q strings.Builder
	for start := 0; start < len(events); start += rowsPerInsert {
		batch := events[start:min(start+rowsPerInsert, len(events))]
		q.Reset()
		args = args[:0]
		q.WriteString(`INSERT INTO audit_events (time, actor, action, user_id, provider_id, outcome, detail, count, first_at) VALUES `)
		for i, e := range batch {
			if e.Action == "" {
				return tokenbroker.Errorf(tokenbroker.EINVALID, "an audit event needs an action")
			}
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString(`(COALESCE(?, ` + nowMS + `), ?, ?, ?, ?, ?, ?, ?, ?)`)
			args = append(args, toMS(e.Time), e.Actor, e.Action, e.UserID, e.ProviderID, e.Outcome, e.Detail,
				e.N(), toMS(firstAt(e)))
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

// firstAt is the first_at column of e: NULL unless e counts events from
// an earlier time than its last.
func firstAt(e tokenbroker.AuditEvent) time.Time {
	if e.N() <= 1 || e.Time.IsZero() || !e.FirstAt.Before(e.Time) {
		return time.Time{}
	}
	return e.FirstAt
}

// ListAudit implements [tokenbroker.AuditStore]: newest first. Since is
// inclusive, Until exclusive.
func (s *Store) ListAudit(ctx context.Context, f tokenbroker.AuditFilter) ([]tokenbroker.AuditEvent, error) {
	var (
		where []string
		args  []any
	)
	add := func(cond string, arg any) {
		where = append(where, cond)
		args = append(args, arg)
	}
	if f.UserID != "" {
		add("user_id = ?", f.UserID)
	}
	if f.ProviderID != "" {
		add("provider_id = ?", f.ProviderID)
	}
	if f.Action != "" {
		add("action = ?", f.Action)
	}
	if f.Actor != "" {
		add("actor = ?", f.Actor)
	}
	if !f.Since.IsZero() {
		add("time >= ?", f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		add("time < ?", f.Until.UnixMilli())
	}
	if f.BeforeID > 0 {
		add("id < ?", f.BeforeID)
	}
	q := `SELECT id, time, actor, action, user_id, provider_id, outcome, detail, count, first_at FROM audit_events`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC LIMIT ?"
	args = append(args, tokenbroker.PageLimit(f.Limit))
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	return collect(rows, err, "audit events", func(r rowScanner) (tokenbroker.AuditEvent, error) {
		var e tokenbroker.AuditEvent
		var t, first sql.NullInt64
		if err := r.Scan(&e.ID, &t, &e.Actor, &e.Action, &e.UserID, &e.ProviderID, &e.Outcome, &e.Detail, &e.Count, &first); err != nil {
			return e, err
		}
		e.Time = fromMS(t)
		e.FirstAt = e.Time
		if first.Valid {
			e.FirstAt = fromMS(first)
		}
		return e, nil
	})
}

// pruneAuditSQL deletes at most $2 rows older than $1, found oldest first
// through audit_events_time, each then by its primary key: the cost of a
// batch is the batch, not the table (TestPruneAuditUsesIndexes).
const pruneAuditSQL = `DELETE FROM audit_events WHERE id IN (
	SELECT id FROM audit_events WHERE time < ? ORDER BY time LIMIT ?)`

// PruneAudit implements [tokenbroker.AuditStore]: one DELETE of at most
// limit rows, found oldest first through audit_events_time.
func (s *Store) PruneAudit(ctx context.Context, before time.Time, limit int) (int64, error) {
	if limit <= 0 {
		return 0, nil
	}
	res, err := s.wdb.ExecContext(ctx, pruneAuditSQL, before.UnixMilli(), limit)
	if err != nil {
		return 0, translate(err, "audit events")
	}
	n, err := res.RowsAffected()
	return n, translate(err, "audit events")
}

// AcquireJobLease implements [tokenbroker.JobLeaseStore]: one upsert
// judged on the database clock.
func (s *Store) AcquireJobLease(ctx context.Context, job, owner string, ttl time.Duration) (bool, error) {
	if job == "" || owner == "" {
		return false, tokenbroker.Errorf(tokenbroker.EINVALID, "a job lease needs a job and an owner")
	}
	res, err := s.wdb.ExecContext(ctx, `
		INSERT INTO job_leases (job, owner, lease_until) VALUES (?, ?, `+nowMS+` + ?)
		ON CONFLICT (job) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
		WHERE job_leases.owner = excluded.owner OR job_leases.lease_until < `+nowMS,
		job, owner, ttl.Milliseconds())
	return affected(res, err, "job lease")
}

// ReleaseJobLease implements [tokenbroker.JobLeaseStore].
func (s *Store) ReleaseJobLease(ctx context.Context, job, owner string) error {
	_, err := s.wdb.ExecContext(ctx, `DELETE FROM job_leases WHERE job = ? AND owner = ?`, job, owner)
	return translate(err, "job lease")
}

func msDuration(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }
