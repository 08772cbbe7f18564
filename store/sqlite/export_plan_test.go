package sqlite

import (
	"context"
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
