package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

// AppendAudit implements [tokenbroker.AuditStore]: the batch is one
// transaction sent in one round trip. An event without Time gets the
// database clock.
func (s *Store) AppendAudit(ctx context.Context, events []tokenbroker.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	for _, e := range events {
		if e.Action == "" {
			return tokenbroker.Errorf(tokenbroker.EINVALID, "an audit event needs an action")
		}
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return insertAudit(ctx, tx, events) })
	return translate(err, "audit events")
}

// insertAudit writes events with tx in one round trip. An event without
// Time gets the database clock.
func insertAudit(ctx context.Context, tx pgx.Tx, events []tokenbroker.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	var b pgx.Batch
	for _, e := range events {
		if e.Action == "" {
			return tokenbroker.Errorf(tokenbroker.EINVALID, "an audit event needs an action")
		}
		b.Queue(`INSERT INTO audit_events (time, actor, action, user_id, provider_id, outcome, detail, count, first_at)
			VALUES (COALESCE($1::timestamptz, now()), $2, $3, $4, $5, $6, $7, $8, $9)`,
			nullTime(e.Time), e.Actor, e.Action, e.UserID, e.ProviderID, e.Outcome, e.Detail, e.N(), nullTime(firstAt(e)))
	}
	return tx.SendBatch(ctx, &b).Close()
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
		args = append(args, arg)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.UserID != "" {
		add("user_id = $%d", f.UserID)
	}
	if f.ProviderID != "" {
		add("provider_id = $%d", f.ProviderID)
	}
	if f.Action != "" {
		add("action = $%d", f.Action)
	}
	if f.Actor != "" {
		add("actor = $%d", f.Actor)
	}
	if !f.Since.IsZero() {
		add("time >= $%d", f.Since)
	}
	if !f.Until.IsZero() {
		add("time < $%d", f.Until)
	}
	if f.BeforeID > 0 {
		add("id < $%d", f.BeforeID)
	}
	q := `SELECT id, time, actor, action, user_id, provider_id, outcome, detail, count, first_at FROM audit_events`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, tokenbroker.PageLimit(f.Limit))
	q += fmt.Sprintf(" ORDER BY id DESC LIMIT $%d", len(args))
	rows, err := s.pool.Query(ctx, q, args...)
	return collect(rows, err, "audit events", func(r pgx.Row) (tokenbroker.AuditEvent, error) {
		var e tokenbroker.AuditEvent
		var t time.Time
		var first *time.Time
		if err := r.Scan(&e.ID, &t, &e.Actor, &e.Action, &e.UserID, &e.ProviderID, &e.Outcome, &e.Detail, &e.Count, &first); err != nil {
			return e, err
		}
		e.Time = t.UTC()
		e.FirstAt = e.Time
		if first != nil {
			e.FirstAt = first.UTC()
		}
		return e, nil
	})
}

// pruneAuditSQL deletes at most $2 rows older than $1, found oldest first
// through audit_events_time, each then by its primary key: the cost of a
// batch is the batch, not the table (TestPruneAuditUsesIndexes). The ids
// are an array (an InitPlan), not an IN subquery, which the planner may
// answer with a hash join over a sequential scan of the whole table.
const pruneAuditSQL = `DELETE FROM audit_events WHERE id = ANY(ARRAY(
	SELECT id FROM audit_events WHERE time < $1 ORDER BY time LIMIT $2))`

// PruneAudit implements [tokenbroker.AuditStore]: one DELETE of at most
// limit rows, found oldest first through audit_events_time.
func (s *Store) PruneAudit(ctx context.Context, before time.Time, limit int) (int64, error) {
	if limit <= 0 {
		return 0, nil
	}
	tag, err := s.pool.Exec(ctx, pruneAuditSQL, before, limit)
	if err != nil {
		return 0, translate(err, "audit events")
	}
	return tag.RowsAffected(), nil
}

// AcquireJobLease implements [tokenbroker.JobLeaseStore]: one upsert
// judged on the database clock.
func (s *Store) AcquireJobLease(ctx context.Context, job, owner string, ttl time.Duration) (bool, error) {
	if job == "" || owner == "" {
		return false, tokenbroker.Errorf(tokenbroker.EINVALID, "a job lease needs a job and an owner")
	}
	tag, err := s.pool.Exec(ctx, `
		INSERT INTO job_leases (job, owner, lease_until) VALUES ($1, $2, now() + $3 * interval '1 millisecond')
		ON CONFLICT (job) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
		WHERE job_leases.owner = excluded.owner OR job_leases.lease_until < now()`,
		job, owner, ttl.Milliseconds())
	if err != nil {
		return false, translate(err, "job lease")
	}
	return tag.RowsAffected() > 0, nil
}

// ReleaseJobLease implements [tokenbroker.JobLeaseStore].
func (s *Store) ReleaseJobLease(ctx context.Context, job, owner string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM job_leases WHERE job = $1 AND owner = $2`, job, owner)
	return translate(err, "job lease")
}
