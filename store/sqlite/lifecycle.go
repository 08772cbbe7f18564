package sqlite

import (
	"context"
	"database/sql"
	"strings"
	"time"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

// ListStaleLinks implements [tokenbroker.LinkStore] on the index
// links_provider_state_refreshed: one range per state.
func (s *Store) ListStaleLinks(ctx context.Context, q tokenbroker.StaleLinkQuery) ([]*tokenbroker.Link, error) {
	if len(q.States) == 0 || q.Limit <= 0 {
		return nil, nil
	}
	args := []any{q.ProviderID}
	marks := make([]string, len(q.States))
	for i, st := range q.States {
		marks[i] = "?"
		args = append(args, string(st))
	}
	args = append(args, toMS(q.RefreshedBefore), q.Limit)
	rows, err := s.rdb.QueryContext(ctx, `
		SELECT `+linkColumns+` FROM links
		WHERE provider_id = ? AND state IN (`+strings.Join(marks, ", ")+`) AND refreshed_at < ?
		  AND refresh_token <> ''
		ORDER BY refreshed_at, id LIMIT ?`, args...)
	if err != nil {
		return nil, translate(err, "links")
	}
	links, err := scanLinks(rows)
	return links, translate(err, "links")
}

// MarkLinkIdle implements [tokenbroker.LinkStore] with one conditional
// UPDATE.
func (s *Store) MarkLinkIdle(ctx context.Context, linkID, generation int64, usedBefore time.Time, rec tokenbroker.Record) (bool, error) {
	return s.writeIf(ctx, "link", rec, `
		UPDATE links SET state = 'idle', updated_at = `+nowMS+`
		WHERE id = ? AND generation = ? AND state IN ('active', 'degraded') AND lease_owner IS NULL
		  AND (last_used_at IS NULL OR last_used_at < ?)`,
		linkID, generation, toMS(usedBefore))
}

// RecordLinkUse implements [tokenbroker.LinkStore] in one transaction of
// the single writer: no lock is waited for in a cycle.
func (s *Store) RecordLinkUse(ctx context.Context, links []tokenbroker.LinkKey) error {
	if len(links) == 0 {
		return nil
	}
	return s.write(ctx, "link use", func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `
			UPDATE links SET last_used_at = `+nowMS+`,
				state = CASE WHEN state = 'idle' THEN 'active' ELSE state END
			WHERE user_id = ? AND provider_id = ?`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, k := range links {
			if _, err := st.ExecContext(ctx, k.UserID, k.ProviderID); err != nil {
				return err
			}
		}
		return nil
	})
}

// CountLinksByState implements [tokenbroker.LinkStore] from the
// link_state_counts table its triggers keep.
func (s *Store) CountLinksByState(ctx context.Context) ([]tokenbroker.LinkStateCount, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT provider_id, state, n FROM link_state_counts WHERE n > 0 ORDER BY provider_id, state`)
	return collect(rows, err, "link counts", func(r rowScanner) (tokenbroker.LinkStateCount, error) {
		var c tokenbroker.LinkStateCount
		var st string
		if err := r.Scan(&c.ProviderID, &st, &c.Count); err != nil {
			return c, err
		}
		c.State = tokenbroker.LinkState(st)
		return c, nil
	})
}
