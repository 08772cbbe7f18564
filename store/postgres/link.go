package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

const linkColumns = `id, user_id, provider_id, account_id, account_login,
	access_token, token_type, refresh_token, id_token, expiry, scopes, extra, key_id,
	generation, state, failure_reason, lease_owner, lease_until,
	created_at, updated_at, refreshed_at`

// scanLink scans linkColumns followed by extra destinations (nil skips).
func scanLink(r pgx.Row, extra ...any) (*tokenbroker.Link, error) {
	var (
		l                             tokenbroker.Link
		expiry, leaseUntil, refreshed *time.Time
		created, updated              time.Time
		extraMap                      map[string]string
		leaseOwner                    *string
		state                         string
	)
	dest := []any{&l.ID, &l.UserID, &l.ProviderID, &l.AccountID, &l.AccountLogin,
		&l.Token.AccessToken, &l.Token.TokenType, &l.Token.RefreshToken, &l.Token.IDToken,
		&expiry, &l.Token.Scopes, &extraMap, &l.KeyID,
		&l.Generation, &state, &l.FailureReason, &leaseOwner, &leaseUntil,
		&created, &updated, &refreshed}
	if err := r.Scan(append(dest, extra...)...); err != nil {
		return nil, err
	}
	l.Token.Expiry = fromNull(expiry)
	l.Token.Scopes = nilIfEmpty(l.Token.Scopes)
	if len(extraMap) > 0 {
		l.Token.Extra = extraMap
	}
	l.State = tokenbroker.LinkState(state)
	if leaseOwner != nil {
		l.LeaseOwner = *leaseOwner
	}
	l.LeaseUntil = fromNull(leaseUntil)
	l.CreatedAt, l.UpdatedAt = created.UTC(), updated.UTC()
	l.RefreshedAt = fromNull(refreshed)
	return &l, nil
}

func scanLinks(rows pgx.Rows, err error) ([]*tokenbroker.Link, error) {
	if err != nil {
		return nil, translate(err, "links")
	}
	defer rows.Close()
	var out []*tokenbroker.Link
	for rows.Next() {
		l, err := scanLink(rows)
		if err != nil {
			return nil, translate(err, "links")
		}
		out = append(out, l)
	}
	return out, translate(rows.Err(), "links")
}

func extraJSON(m map[string]string) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("postgres: encode token extra: %w", err)
	}
	return string(b), nil
}

// GetLink implements [tokenbroker.LinkStore].
func (s *Store) GetLink(ctx context.Context, userID, providerID string) (*tokenbroker.Link, error) {
	l, err := scanLink(s.pool.QueryRow(ctx,
		`SELECT `+linkColumns+` FROM links WHERE user_id = $1 AND provider_id = $2`, userID, providerID))
	if err != nil {
		return nil, translate(err, "link")
	}
	return l, nil
}

// ListLinks implements [tokenbroker.LinkStore].
func (s *Store) ListLinks(ctx context.Context, userID string) ([]*tokenbroker.Link, error) {
	return scanLinks(s.pool.Query(ctx,
		`SELECT `+linkColumns+` FROM links WHERE user_id = $1 ORDER BY provider_id`, userID))
}

// PutLink implements [tokenbroker.LinkStore] with one upsert that also
// notifies.
func (s *Store) PutLink(ctx context.Context, l *tokenbroker.Link) (*tokenbroker.Link, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	extra, err := extraJSON(l.Token.Extra)
	if err != nil {
		return nil, err
	}
	out, err := scanLink(s.pool.QueryRow(ctx, `
		WITH u AS (
			INSERT INTO links (user_id, provider_id, account_id, account_login,
				access_token, token_type, refresh_token, id_token, expiry, scopes, extra, key_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12)
			ON CONFLICT (user_id, provider_id) DO UPDATE SET
				account_id     = excluded.account_id,
				account_login  = excluded.account_login,
				access_token   = excluded.access_token,
				token_type     = excluded.token_type,
				refresh_token  = excluded.refresh_token,
				id_token       = excluded.id_token,
				expiry         = excluded.expiry,
				scopes         = excluded.scopes,
				extra          = excluded.extra,
				key_id         = excluded.key_id,
				generation     = links.generation + 1,
				state          = 'active',
				failure_reason = '',
				lease_owner    = NULL,
				lease_until    = NULL,
				updated_at     = now()
			RETURNING `+linkColumns+`
		)
		SELECT `+linkColumns+`, pg_notify('`+Channel+`', u.id::text) FROM u`,
		l.UserID, l.ProviderID, l.AccountID, l.AccountLogin,
		l.Token.AccessToken, l.Token.TokenType, l.Token.RefreshToken, l.Token.IDToken,
		nullTime(l.Token.Expiry), nonNil(l.Token.Scopes), extra, l.KeyID), nil)
	if err != nil {
		return nil, translate(err, "link")
	}
	s.hub.Signal(out.ID)
	return out, nil
}

// DeleteLink implements [tokenbroker.LinkStore].
func (s *Store) DeleteLink(ctx context.Context, userID, providerID string) error {
	var id int64
	err := s.pool.QueryRow(ctx, `
		WITH u AS (DELETE FROM links WHERE user_id = $1 AND provider_id = $2 RETURNING id)
		SELECT u.id, pg_notify('`+Channel+`', u.id::text) FROM u`, userID, providerID).Scan(&id, nil)
	if err != nil {
		return translate(err, "link")
	}
	s.hub.Signal(id)
	return nil
}

// AcquireLease implements [tokenbroker.LinkStore]: one conditional UPDATE
// judged on the database clock, so that of any number of concurrent
// callers in any number of replicas exactly one wins a generation's lease
// (I1). A negative ttl gives a lease that has already expired.
func (s *Store) AcquireLease(ctx context.Context, id, generation int64, owner string, ttl time.Duration) (bool, error) {
	if owner == "" {
		return false, tokenbroker.Errorf(tokenbroker.EINVALID, "lease owner must not be empty")
	}
	tag, err := s.pool.Exec(ctx, `
		UPDATE links SET lease_owner = $3, lease_until = now() + $4 * interval '1 millisecond'
		WHERE id = $1 AND generation = $2 AND state = 'active'
		  AND (lease_until IS NULL OR lease_until < now())`,
		id, generation, owner, ttl.Milliseconds())
	return won(tag, err, "link lease")
}

// ReleaseLease implements [tokenbroker.LinkStore]: only the owner's lease
// is cleared.
func (s *Store) ReleaseLease(ctx context.Context, id int64, owner string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `
		WITH u AS (
			UPDATE links SET lease_owner = NULL, lease_until = NULL
			WHERE id = $1 AND lease_owner = $2 RETURNING id
		) `+notifyFrom, id, owner)
	return s.signalIf(id, tag, err, "link lease")
}

// CommitRefresh implements [tokenbroker.LinkStore]: compare-and-swap on
// the generation in one UPDATE (I3), with the NOTIFY in the same
// statement. A won commit also makes the link active again: its tokens
// are fresh from the provider, even if a successor marked the same
// generation reauth_required meanwhile (I4).
func (s *Store) CommitRefresh(ctx context.Context, l *tokenbroker.Link) (bool, error) {
	extra, err := extraJSON(l.Token.Extra)
	if err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx, `
		WITH u AS (
			UPDATE links SET
				access_token   = $3,
				token_type     = $4,
				refresh_token  = $5,
				id_token       = $6,
				expiry         = $7,
				scopes         = $8,
				extra          = $9::jsonb,
				key_id         = $10,
				account_id     = CASE WHEN $11 = '' THEN account_id ELSE $11 END,
				account_login  = CASE WHEN $12 = '' THEN account_login ELSE $12 END,
				generation     = generation + 1,
				state          = 'active',
				failure_reason = '',
				lease_owner    = NULL,
				lease_until    = NULL,
				refreshed_at   = now(),
				updated_at     = now()
			WHERE id = $1 AND generation = $2
			RETURNING id
		) `+notifyFrom,
		l.ID, l.Generation,
		l.Token.AccessToken, l.Token.TokenType, l.Token.RefreshToken, l.Token.IDToken,
		nullTime(l.Token.Expiry), nonNil(l.Token.Scopes), extra, l.KeyID,
		l.AccountID, l.AccountLogin)
	return s.signalIf(l.ID, tag, err, "link")
}

// MarkReauthRequired implements [tokenbroker.LinkStore]: CAS on the
// generation, tokens untouched (I4).
func (s *Store) MarkReauthRequired(ctx context.Context, id, generation int64, reason string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `
		WITH u AS (
			UPDATE links SET state = 'reauth_required', failure_reason = $3,
				lease_owner = NULL, lease_until = NULL, updated_at = now()
			WHERE id = $1 AND generation = $2
			RETURNING id
		) `+notifyFrom, id, generation, reason)
	return s.signalIf(id, tag, err, "link")
}

// ListLinksExpiringBefore implements [tokenbroker.LinkStore] on the
// partial index links_active_expiry.
func (s *Store) ListLinksExpiringBefore(ctx context.Context, t time.Time, limit int) ([]*tokenbroker.Link, error) {
	return scanLinks(s.pool.Query(ctx, `
		SELECT `+linkColumns+` FROM links
		WHERE state = 'active' AND expiry IS NOT NULL AND expiry < $1
		ORDER BY expiry, id LIMIT $2`, t, limit))
}

// ListLinksNotSealedBy implements [tokenbroker.LinkStore].
func (s *Store) ListLinksNotSealedBy(ctx context.Context, keyID string, afterID int64, limit int) ([]*tokenbroker.Link, error) {
	return scanLinks(s.pool.Query(ctx, `
		SELECT `+linkColumns+` FROM links
		WHERE id > $1 AND key_id <> $2
		ORDER BY id LIMIT $3`, afterID, keyID, limit))
}

// ResealLink implements [tokenbroker.LinkStore]: CAS on the generation,
// which it does not bump, so a concurrent refresh's commit still wins.
func (s *Store) ResealLink(ctx context.Context, l *tokenbroker.Link) (bool, error) {
	extra, err := extraJSON(l.Token.Extra)
	if err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx, `
		UPDATE links SET access_token = $3, refresh_token = $4, id_token = $5, extra = $6::jsonb, key_id = $7
		WHERE id = $1 AND generation = $2`,
		l.ID, l.Generation, l.Token.AccessToken, l.Token.RefreshToken, l.Token.IDToken, extra, l.KeyID)
	return won(tag, err, "link")
}

// CountSealedByKey implements [tokenbroker.LinkStore].
func (s *Store) CountSealedByKey(ctx context.Context) (map[string]int64, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT key_id, count(*) FROM (
			SELECT key_id FROM links
			UNION ALL
			SELECT key_id FROM auth_requests WHERE expires_at > now()
		) k GROUP BY key_id`)
	if err != nil {
		return nil, translate(err, "key counts")
	}
	defer rows.Close()
	out := make(map[string]int64)
	for rows.Next() {
		var k string
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return nil, translate(err, "key counts")
		}
		out[k] = n
	}
	return out, translate(rows.Err(), "key counts")
}

// won reports whether a conditional statement changed (or, for a
// notifying CTE, selected) a row.
func won(tag pgconn.CommandTag, err error, what string) (bool, error) {
	if err != nil {
		return false, translate(err, what)
	}
	return tag.RowsAffected() > 0, nil
}

// signalIf also wakes this process's subscribers at once when the write
// won; other replicas learn of it from the NOTIFY.
func (s *Store) signalIf(id int64, tag pgconn.CommandTag, err error, what string) (bool, error) {
	ok, err := won(tag, err, what)
	if ok {
		s.hub.Signal(id)
	}
	return ok, err
}
