package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

// ExplainLinkList returns PostgreSQL's plan of ListLinkSummaries(q) with
// sequential scans, sorts and bitmap scans priced out, so that the plan
// shows whether an index can deliver the page in order.
func (s *Store) ExplainLinkList(ctx context.Context, q tokenbroker.LinkQuery) (string, error) {
	query, args, err := linkListSQL(q)
	if err != nil {
		return "", err
	}
	var plan string
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, set := range []string{"enable_seqscan", "enable_sort", "enable_bitmapscan"} {
			if _, err := tx.Exec(ctx, "SET LOCAL "+set+" = off"); err != nil {
				return err
			}
		}
		plan, err = explain(ctx, tx, query, args...)
		return err
	})
	return plan, err
}

// SeedLinks inserts n links of users u0..u(n/10) to providers p0..p9,
// every seventh reauth_required with one of three reasons, and analyzes
// the table, so that plans are made with realistic statistics.
func (s *Store) SeedLinks(ctx context.Context, n int) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO links (user_id, provider_id, account_login, access_token, state, failure_reason)
		SELECT 'u' || (i / 10), 'p' || (i % 10), 'login' || i, 'sealed',
			CASE WHEN i % 7 = 0 THEN 'reauth_required' ELSE 'active' END,
			CASE WHEN i % 7 = 0 THEN (ARRAY['invalid_grant: x', 'bad_refresh_token', 'lost refresh: y'])[i % 3 + 1] ELSE '' END
		FROM generate_series(0, $1 - 1) AS i`, n)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `ANALYZE links`)
	return err
}
