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
		b.Queue(`INSERT INTO audit_events (time, actor, action, user_id, provider_id, outcome, detail)
			VALUES (COALESCE($1::timestamptz, now()), $2, $3, $4, $5, $6, $7)`,
			nullTime(e.Time), e.Actor, e.Action, e.UserID, e.ProviderID, e.Outcome, e.Detail)
	}
	return tx.SendBatch(ctx, &b).Close()
}

// auditLimit applies the default and the cap of [tokenbroker.AuditFilter].
func auditLimit(n int) int {
	switch {
	case n <= 0:
		return 100
	case n > 1000:
		return 1000
	}
	return n
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
	q := `SELECT id, time, actor, action, user_id, provider_id, outcome, detail FROM audit_events`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, auditLimit(f.Limit))
	q += fmt.Sprintf(" ORDER BY id DESC LIMIT $%d", len(args))
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, translate(err, "audit events")
	}
	defer rows.Close()
	var out []tokenbroker.AuditEvent
	for rows.Next() {
		var e tokenbroker.AuditEvent
		var t time.Time
		if err := rows.Scan(&e.ID, &t, &e.Actor, &e.Action, &e.UserID, &e.ProviderID, &e.Outcome, &e.Detail); err != nil {
			return nil, translate(err, "audit events")
		}
		e.Time = t.UTC()
		out = append(out, e)
	}
	return out, translate(rows.Err(), "audit events")
}
