package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

const linkColumns = `id, user_id, provider_id, account_id, account_login,
	access_token, token_type, refresh_token, id_token, expiry, scopes, extra, key_id,
	generation, state, failure_reason, lease_owner, lease_until,
	created_at, updated_at, refreshed_at`

func scanLink(r rowScanner) (*tokenbroker.Link, error) {
	var (
		l                                          tokenbroker.Link
		expiry, leaseUntil, created, updated, refr sql.NullInt64
		scopes, extra                              string
		leaseOwner                                 sql.NullString
		state                                      string
	)
	err := r.Scan(&l.ID, &l.UserID, &l.ProviderID, &l.AccountID, &l.AccountLogin,
		&l.Token.AccessToken, &l.Token.TokenType, &l.Token.RefreshToken, &l.Token.IDToken,
		&expiry, &scopes, &extra, &l.KeyID,
		&l.Generation, &state, &l.FailureReason, &leaseOwner, &leaseUntil,
		&created, &updated, &refr)
	if err != nil {
		return nil, err
	}
	l.Token.Expiry = fromMS(expiry)
	if err := unmarshalStrings(scopes, &l.Token.Scopes); err != nil {
		return nil, err
	}
	if err := unmarshalMap(extra, &l.Token.Extra); err != nil {
		return nil, err
	}
	l.State = tokenbroker.LinkState(state)
	l.LeaseOwner = leaseOwner.String
	l.LeaseUntil = fromMS(leaseUntil)
	l.CreatedAt = fromMS(created)
	l.UpdatedAt = fromMS(updated)
	l.RefreshedAt = fromMS(refr)
	return &l, nil
}

func scanLinks(rows *sql.Rows) ([]*tokenbroker.Link, error) {
	defer rows.Close()
	var out []*tokenbroker.Link
	for rows.Next() {
		l, err := scanLink(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// GetLink implements [tokenbroker.LinkStore].
func (s *Store) GetLink(ctx context.Context, userID, providerID string) (*tokenbroker.Link, error) {
	l, err := scanLink(s.rdb.QueryRowContext(ctx,
		`SELECT `+linkColumns+` FROM links WHERE user_id = ? AND provider_id = ?`, userID, providerID))
	if err != nil {
		return nil, translate(err, "link")
	}
	return l, nil
}

// ListLinks implements [tokenbroker.LinkStore].
func (s *Store) ListLinks(ctx context.Context, userID string) ([]*tokenbroker.Link, error) {
	rows, err := s.rdb.QueryContext(ctx,
		`SELECT `+linkColumns+` FROM links WHERE user_id = ? ORDER BY provider_id`, userID)
	if err != nil {
		return nil, translate(err, "links")
	}
	links, err := scanLinks(rows)
	return links, translate(err, "links")
}

// PutLink implements [tokenbroker.LinkStore] with one upsert.
func (s *Store) PutLink(ctx context.Context, l *tokenbroker.Link) (*tokenbroker.Link, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	scopes, extra, err := marshalToken(&l.Token)
	if err != nil {
		return nil, err
	}
	out, err := scanLink(s.wdb.QueryRowContext(ctx, `
		INSERT INTO links (user_id, provider_id, account_id, account_login,
			access_token, token_type, refresh_token, id_token, expiry, scopes, extra, key_id,
			generation, state, failure_reason, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 'active', '', `+nowMS+`, `+nowMS+`)
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
			updated_at     = excluded.updated_at
		RETURNING `+linkColumns,
		l.UserID, l.ProviderID, l.AccountID, l.AccountLogin,
		l.Token.AccessToken, l.Token.TokenType, l.Token.RefreshToken, l.Token.IDToken,
		toMS(l.Token.Expiry), scopes, extra, l.KeyID))
	if err != nil {
		return nil, translate(err, "link")
	}
	s.hub.Signal(out.ID)
	return out, nil
}

// DeleteLink implements [tokenbroker.LinkStore].
func (s *Store) DeleteLink(ctx context.Context, userID, providerID string) error {
	var id int64
	err := s.wdb.QueryRowContext(ctx,
		`DELETE FROM links WHERE user_id = ? AND provider_id = ? RETURNING id`, userID, providerID).Scan(&id)
	if err != nil {
		return translate(err, "link")
	}
	s.hub.Signal(id)
	return nil
}

// AcquireLease implements [tokenbroker.LinkStore]: one conditional UPDATE
// judged on the database clock, so that of any number of concurrent
// callers for one generation exactly one wins (I1). A negative ttl gives
// a lease that has already expired.
func (s *Store) AcquireLease(ctx context.Context, id, generation int64, owner string, ttl time.Duration) (bool, error) {
	if owner == "" {
		return false, tokenbroker.Errorf(tokenbroker.EINVALID, "lease owner must not be empty")
	}
	res, err := s.wdb.ExecContext(ctx, `
		UPDATE links SET lease_owner = ?, lease_until = `+nowMS+` + ?
		WHERE id = ? AND generation = ? AND state = 'active'
		  AND (lease_until IS NULL OR lease_until < `+nowMS+`)`,
		owner, ttl.Milliseconds(), id, generation)
	return affected(res, err, "link lease")
}

// ReleaseLease implements [tokenbroker.LinkStore]: only the owner's lease
// is cleared.
func (s *Store) ReleaseLease(ctx context.Context, id int64, owner string) (bool, error) {
	res, err := s.wdb.ExecContext(ctx, `
		UPDATE links SET lease_owner = NULL, lease_until = NULL
		WHERE id = ? AND lease_owner = ?`, id, owner)
	ok, err := affected(res, err, "link lease")
	if ok {
		s.hub.Signal(id)
	}
	return ok, err
}

// CommitRefresh implements [tokenbroker.LinkStore]: compare-and-swap on
// the generation in one UPDATE (I3). A won commit also makes the link
// active again: its tokens are fresh from the provider, even if a loser
// marked the same generation reauth_required meanwhile (I4).
func (s *Store) CommitRefresh(ctx context.Context, l *tokenbroker.Link) (bool, error) {
	scopes, extra, err := marshalToken(&l.Token)
	if err != nil {
		return false, err
	}
	res, err := s.wdb.ExecContext(ctx, `
		UPDATE links SET
			access_token   = ?,
			token_type     = ?,
			refresh_token  = ?,
			id_token       = ?,
			expiry         = ?,
			scopes         = ?,
			extra          = ?,
			key_id         = ?,
			account_id     = CASE WHEN ? = '' THEN account_id ELSE ? END,
			account_login  = CASE WHEN ? = '' THEN account_login ELSE ? END,
			generation     = generation + 1,
			state          = 'active',
			failure_reason = '',
			lease_owner    = NULL,
			lease_until    = NULL,
			refreshed_at   = `+nowMS+`,
			updated_at     = `+nowMS+`
		WHERE id = ? AND generation = ?`,
		l.Token.AccessToken, l.Token.TokenType, l.Token.RefreshToken, l.Token.IDToken,
		toMS(l.Token.Expiry), scopes, extra, l.KeyID,
		l.AccountID, l.AccountID, l.AccountLogin, l.AccountLogin,
		l.ID, l.Generation)
	ok, err := affected(res, err, "link")
	if ok {
		s.hub.Signal(l.ID)
	}
	return ok, err
}

// MarkReauthRequired implements [tokenbroker.LinkStore]: CAS on the
// generation, tokens untouched (I4).
func (s *Store) MarkReauthRequired(ctx context.Context, id, generation int64, reason string) (bool, error) {
	res, err := s.wdb.ExecContext(ctx, `
		UPDATE links SET state = 'reauth_required', failure_reason = ?,
			lease_owner = NULL, lease_until = NULL, updated_at = `+nowMS+`
		WHERE id = ? AND generation = ?`, reason, id, generation)
	ok, err := affected(res, err, "link")
	if ok {
		s.hub.Signal(id)
	}
	return ok, err
}

// ListLinksExpiringBefore implements [tokenbroker.LinkStore] on the
// partial index links_active_expiry.
func (s *Store) ListLinksExpiringBefore(ctx context.Context, t time.Time, limit int) ([]*tokenbroker.Link, error) {
	rows, err := s.rdb.QueryContext(ctx, `
		SELECT `+linkColumns+` FROM links
		WHERE state = 'active' AND expiry IS NOT NULL AND expiry < ?
		ORDER BY expiry, id LIMIT ?`, t.UnixMilli(), limit)
	if err != nil {
		return nil, translate(err, "links")
	}
	links, err := scanLinks(rows)
	return links, translate(err, "links")
}

// ListLinksNotSealedBy implements [tokenbroker.LinkStore].
func (s *Store) ListLinksNotSealedBy(ctx context.Context, keyID string, afterID int64, limit int) ([]*tokenbroker.Link, error) {
	rows, err := s.rdb.QueryContext(ctx, `
		SELECT `+linkColumns+` FROM links
		WHERE id > ? AND key_id <> ?
		ORDER BY id LIMIT ?`, afterID, keyID, limit)
	if err != nil {
		return nil, translate(err, "links")
	}
	links, err := scanLinks(rows)
	return links, translate(err, "links")
}

// ResealLink implements [tokenbroker.LinkStore]: CAS on the generation,
// which it does not bump, so a concurrent refresh's commit still wins.
func (s *Store) ResealLink(ctx context.Context, l *tokenbroker.Link) (bool, error) {
	_, extra, err := marshalToken(&l.Token)
	if err != nil {
		return false, err
	}
	res, err := s.wdb.ExecContext(ctx, `
		UPDATE links SET access_token = ?, refresh_token = ?, id_token = ?, extra = ?, key_id = ?
		WHERE id = ? AND generation = ?`,
		l.Token.AccessToken, l.Token.RefreshToken, l.Token.IDToken, extra, l.KeyID,
		l.ID, l.Generation)
	return affected(res, err, "link")
}

// CountSealedByKey implements [tokenbroker.LinkStore].
func (s *Store) CountSealedByKey(ctx context.Context) (map[string]int64, error) {
	rows, err := s.rdb.QueryContext(ctx, `
		SELECT key_id, count(*) FROM (
			SELECT key_id FROM links
			UNION ALL
			SELECT key_id FROM auth_requests WHERE expires_at > `+nowMS+`
		) GROUP BY key_id`)
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

// affected reports whether an UPDATE changed a row.
func affected(res sql.Result, err error, what string) (bool, error) {
	if err != nil {
		return false, translate(err, what)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, translate(err, what)
	}
	return n > 0, nil
}

func marshalToken(t *tokenbroker.Token) (scopes, extra string, err error) {
	if scopes, err = marshalStrings(t.Scopes); err != nil {
		return "", "", err
	}
	if len(t.Extra) == 0 {
		return scopes, "{}", nil
	}
	b, err := json.Marshal(t.Extra)
	if err != nil {
		return "", "", fmt.Errorf("sqlite: encode token extra: %w", err)
	}
	return scopes, string(b), nil
}

func marshalStrings(v []string) (string, error) {
	if len(v) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("sqlite: encode list: %w", err)
	}
	return string(b), nil
}

func unmarshalStrings(s string, v *[]string) error {
	if s == "" || s == "[]" {
		*v = nil
		return nil
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("sqlite: decode list: %w", err)
	}
	return nil
}

func unmarshalMap(s string, v *map[string]string) error {
	if s == "" || s == "{}" {
		*v = nil
		return nil
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("sqlite: decode map: %w", err)
	}
	return nil
}
