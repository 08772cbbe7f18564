package postgres

import (
	"context"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Explain returns PostgreSQL's plan of query, as the planner chooses it.
func (s *Store) Explain(ctx context.Context, query string, args ...any) (string, error) {
	return explain(ctx, s.pool, query, args...)
}

// explain returns the plan of query on q (the pool, or a transaction with
// its own planner settings), one line a step.
func explain(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, query string, args ...any) (string, error) {
	rows, err := q.Query(ctx, "EXPLAIN "+query, args...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return "", err
		}
		plan = append(plan, line)
	}
	return strings.Join(plan, "\n"), rows.Err()
}

// ExplainPruneAudit returns the plan of one PruneAudit batch.
func (s *Store) ExplainPruneAudit(ctx context.Context, before time.Time, limit int) (string, error) {
	return s.Explain(ctx, pruneAuditSQL, before, limit)
}

// SeedAudit inserts n token.read rows, one a second back from now, and
// analyzes the table.
func (s *Store) SeedAudit(ctx context.Context, n int) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO audit_events (time, actor, action, user_id, provider_id, outcome, count)
		SELECT now() - i * interval '1 second', 'key:abc', 'token.read', 'u' || (i % 1000), 'github', 'ok', 3
		FROM generate_series(0, $1 - 1) AS i`, n)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `ANALYZE audit_events`)
	return err
}

// ExplainDueLinks returns the plan of ListLinksExpiringBefore's first
// page of limit links expiring before t.
func (s *Store) ExplainDueLinks(ctx context.Context, t time.Time, limit int) (string, error) {
	return s.Explain(ctx, expiringSQL, t, time.Unix(0, 0), int64(math.MinInt64), limit)
}

// SeedExpiringLinks inserts n active links whose tokens expired (the
// first due of them, in the last due seconds, or all at one instant if
// tied) or expire in the next days, and analyzes the table.
func (s *Store) SeedExpiringLinks(ctx context.Context, n, due int, tied bool) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO links (user_id, provider_id, access_token, refresh_token, state, expiry)
		SELECT 'u' || i, 'github', 'sealed', 'sealed', 'active',
			CASE WHEN i < $2 AND $3 THEN now() - interval '1 minute'
			     WHEN i < $2 THEN now() - (i + 1) * interval '1 second'
			     ELSE now() + i * interval '10 seconds' END
		FROM generate_series(0, $1 - 1) AS i`, n, due, tied)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `ANALYZE links`)
	return err
}
