package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

// ListStaleLinks implements [tokenbroker.LinkStore] on the index
// links_provider_state_refreshed: one range per state.
func (s *Store) ListStaleLinks(ctx context.Context, q tokenbroker.StaleLinkQuery) ([]*tokenbroker.Link, error) {
	if len(q.States) == 0 || q.Limit <= 0 {
		return nil, nil
	}
	states := make([]string, len(q.States))
	for i, st := range q.States {
		states[i] = string(st)
	}
	return scanLinks(s.pool.Query(ctx, `
		SELECT `+linkColumns+` FROM links
		WHERE provider_id = $1 AND state = ANY($2) AND refreshed_at < $3 AND refresh_token <> ''
		ORDER BY refreshed_at, id LIMIT $4`, q.ProviderID, states, q.RefreshedBefore, q.Limit))
}

// MarkLinkIdle implements [tokenbroker.LinkStore] with one conditional
// UPDATE.
func (s *Store) MarkLinkIdle(ctx context.Context, linkID, generation int64, usedBefore time.Time, rec tokenbroker.Record) (bool, error) {
	return s.writeIf(ctx, linkID, rec, "link", `
		UPDATE links SET state = 'idle', updated_at = now()
		WHERE id = $1 AND generation = $2 AND state IN ('active', 'degraded') AND lease_owner IS NULL
		  AND (last_used_at IS NULL OR last_used_at < $3)`,
		linkID, generation, usedBefore)
}

// RecordLinkUse implements [tokenbroker.LinkStore]. One statement stamps
// every link it can lock at once, skipping rows another write holds (so
// two replicas' batches never wait for each other, let alone in a cycle);
// the rare idle links among them are then made active one statement each,
// so that a statement that moves a link between states (and the counter
// rows the trigger updates) touches one link only.
func (s *Store) RecordLinkUse(ctx context.Context, links []tokenbroker.LinkKey) error {
	if len(links) == 0 {
		return nil
	}
	users := make([]string, len(links))
	providers := make([]string, len(links))
	for i, k := range links {
		users[i], providers[i] = k.UserID, k.ProviderID
	}
	rows, err := s.pool.Query(ctx, `
		WITH t AS (
			SELECT l.id FROM links l
			JOIN unnest($1::text[], $2::text[]) AS k(user_id, provider_id)
			  ON l.user_id = k.user_id AND l.provider_id = k.provider_id
			ORDER BY l.id
			FOR UPDATE OF l SKIP LOCKED
		)
		UPDATE links SET last_used_at = now() FROM t WHERE links.id = t.id
		RETURNING links.id, links.state`, users, providers)
	if err != nil {
		return translate(err, "link use")
	}
	var idle []int64
	for rows.Next() {
		var (
			id    int64
			state string
		)
		if err := rows.Scan(&id, &state); err != nil {
			rows.Close()
			return translate(err, "link use")
		}
		if tokenbroker.LinkState(state) == tokenbroker.LinkIdle {
			idle = append(idle, id)
		}
	}
	if err := rows.Err(); err != nil {
		return translate(err, "link use")
	}
	for _, id := range idle {
		if _, err := s.pool.Exec(ctx, `UPDATE links SET state = 'active', updated_at = now() WHERE id = $1 AND state = 'idle'`, id); err != nil {
			return translate(err, "link use")
		}
	}
	return nil
}

// CountLinksByState implements [tokenbroker.LinkStore] from the
// link_state_counts table its trigger keeps.
func (s *Store) CountLinksByState(ctx context.Context) ([]tokenbroker.LinkStateCount, error) {
	rows, err := s.pool.Query(ctx, `SELECT provider_id, state, n FROM link_state_counts WHERE n > 0 ORDER BY provider_id, state`)
	return collect(rows, err, "link counts", func(r pgx.Row) (tokenbroker.LinkStateCount, error) {
		var c tokenbroker.LinkStateCount
		var st string
		if err := r.Scan(&c.ProviderID, &st, &c.Count); err != nil {
			return c, err
		}
		c.State = tokenbroker.LinkState(st)
		return c, nil
	})
}
