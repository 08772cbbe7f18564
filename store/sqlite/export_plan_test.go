package sqlite

import (
	"context"
	"math"
	"strings"
	"time"
)

// Explain returns SQLite's query plan of query, one step a line.
func (s *Store) Explain(ctx context.Context, query string, args ...any) (string, error) {
	rows, err := s.rdb.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			return "", err
		}
		plan = append(plan, detail)
	}
	return strings.Join(plan, "\n"), rows.Err()
}

// ExplainPruneAudit returns the plan of one PruneAudit batch.
func (s *Store) ExplainPruneAudit(ctx context.Context, before time.Time, limit int) (string, error) {
	return s.Explain(ctx, pruneAuditSQL, before.UnixMilli(), limit)
}

// SeedAudit inserts n token.read rows, one a second back from now, and
// analyzes the database.
func (s *Store) SeedAudit(ctx context.Context, n int) error {
	_, err := s.wdb.ExecContext(ctx, `
		WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < ?)
		INSERT INTO audit_events (time, actor, action, user_id, provider_id, outcome, count)
		SELECT `+nowMS+` - i * 1000, 'key:abc', 'token.read', 'u' || (i % 1000), 'github', 'ok', 3 FROM seq`, n)
	if err != nil {
		return err
	}
	_, err = s.wdb.ExecContext(ctx, `ANALYZE`)
	return err
}

// ExplainDueLinks returns the plan of ListLinksExpiringBefore's first
// page of limit links expiring before t.
func (s *Store) ExplainDueLinks(ctx context.Context, t time.Time, limit int) (string, error) {
	return s.Explain(ctx, expiringSQL, t.UnixMilli(), int64(math.MinInt64), int64(0), limit)
}

// Analyze gathers the planner's statistics (ANALYZE).
func (s *Store) Analyze(ctx context.Context) error {
	_, err := s.wdb.ExecContext(ctx, `ANALYZE`)
	return err
}

// SeedExpiringLinks inserts n active links whose tokens expired (the
// first due of them, in the last due seconds) or expire in the next days.
func (s *Store) SeedExpiringLinks(ctx context.Context, n, due int) error {
	_, err := s.wdb.ExecContext(ctx, `
		WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < ?)
		INSERT INTO links (user_id, provider_id, access_token, refresh_token, state, expiry, created_at, updated_at)
		SELECT 'u' || i, 'github', 'sealed', 'sealed', 'active',
			CASE WHEN i < ? THEN `+nowMS+` - (i + 1) * 1000 ELSE `+nowMS+` + i * 10000 END, 0, 0
		FROM seq`, n, due)
	return err
}
