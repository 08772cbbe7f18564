package sqlite

import (
	"context"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

// ExplainLinkList returns SQLite's query plan of ListLinkSummaries(q), one
// step a line.
func (s *Store) ExplainLinkList(ctx context.Context, q tokenbroker.LinkQuery) (string, error) {
	query, args, err := linkListSQL(q)
	if err != nil {
		return "", err
	}
	return s.Explain(ctx, query, args...)
}

// SeedLinks inserts n links of users u0..u(n/10) to providers p0..p9,
// every seventh reauth_required with one of three reasons, and analyzes
// the database, so that plans are made with realistic statistics.
func (s *Store) SeedLinks(ctx context.Context, n int) error {
	_, err := s.wdb.ExecContext(ctx, `
		WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < ?)
		INSERT INTO links (user_id, provider_id, account_login, access_token, state, failure_reason, created_at, updated_at)
		SELECT 'u' || (i / 10), 'p' || (i % 10), 'login' || i, 'sealed',
			CASE WHEN i % 7 = 0 THEN 'reauth_required' ELSE 'active' END,
			CASE WHEN i % 7 = 0 THEN (CASE i % 3 WHEN 0 THEN 'invalid_grant: x' WHEN 1 THEN 'bad_refresh_token' ELSE 'lost refresh: y' END) ELSE '' END,
			0, 0
		FROM seq`, n)
	if err != nil {
		return err
	}
	_, err = s.wdb.ExecContext(ctx, `ANALYZE`)
	return err
}
