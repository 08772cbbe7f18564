package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

// CreateConnectSession implements [tokenbroker.ConnectStore]. CreatedAt is
// set from the database clock.
func (s *Store) CreateConnectSession(ctx context.Context, cs *tokenbroker.ConnectSession) error {
	if cs.ID == "" || cs.ExpiresAt.IsZero() {
		return tokenbroker.Errorf(tokenbroker.EINVALID, "a connect session needs an id and an expiry")
	}
	var created time.Time
	err := s.pool.QueryRow(ctx, `
		INSERT INTO connect_sessions (id_hash, user_id, providers, return_url, created_by, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)
		RETURNING created_at`,
		hashID(cs.ID), cs.UserID, nonNil(cs.Providers), cs.ReturnURL, cs.CreatedBy, cs.ExpiresAt).Scan(&created)
	if err != nil {
		return translate(err, "connect session")
	}
	cs.CreatedAt = created.UTC()
	return nil
}

// GetConnectSession implements [tokenbroker.ConnectStore]; expiry is
// judged on the database clock.
func (s *Store) GetConnectSession(ctx context.Context, id string) (*tokenbroker.ConnectSession, error) {
	var (
		cs               = tokenbroker.ConnectSession{ID: id}
		created, expires time.Time
		claimed          *time.Time
	)
	err := s.pool.QueryRow(ctx, `
		SELECT user_id, providers, return_url, created_by, created_at, expires_at, claimed_at
		FROM connect_sessions WHERE id_hash = $1 AND expires_at > now()`, hashID(id)).
		Scan(&cs.UserID, &cs.Providers, &cs.ReturnURL, &cs.CreatedBy, &created, &expires, &claimed)
	if err != nil {
		return nil, translate(err, "connect session")
	}
	cs.Providers = nilIfEmpty(cs.Providers)
	cs.CreatedAt, cs.ExpiresAt, cs.ClaimedAt = created.UTC(), expires.UTC(), fromNull(claimed)
	return &cs, nil
}

// ClaimConnectSession implements [tokenbroker.ConnectStore]: one
// conditional UPDATE, so of concurrent claims exactly one wins. A missing
// or expired session gives [tokenbroker.ENOTFOUND].
func (s *Store) ClaimConnectSession(ctx context.Context, id string) (bool, error) {
	h := hashID(id)
	tag, err := s.pool.Exec(ctx, `
		UPDATE connect_sessions SET claimed_at = now()
		WHERE id_hash = $1 AND claimed_at IS NULL AND expires_at > now()`, h)
	ok, err := won(tag, err, "connect session")
	if ok || err != nil {
		return ok, err
	}
	// Lost: tell "already claimed" from "no such session". The decision
	// was the UPDATE above; this read only chooses the answer.
	var exists bool
	err = s.pool.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM connect_sessions WHERE id_hash = $1 AND expires_at > now())`, h).Scan(&exists)
	if err != nil {
		return false, translate(err, "connect session")
	}
	if !exists {
		return false, tokenbroker.Errorf(tokenbroker.ENOTFOUND, "connect session not found")
	}
	return false, nil
}

const authRequestColumns = `kind, session_hash, user_id, provider_id, secret, key_id,
	redirect_uri, user_code, verify_uri, interval_ms, created_at, expires_at`

// scanAuthRequest scans authRequestColumns, preceded by id_hash when id
// is empty.
func scanAuthRequest(r pgx.Row, id string) (*tokenbroker.AuthRequest, error) {
	var (
		ar               = tokenbroker.AuthRequest{ID: id}
		intervalMS       int64
		created, expires time.Time
	)
	dest := []any{&ar.Kind, &ar.SessionHash, &ar.UserID, &ar.ProviderID, &ar.Secret, &ar.KeyID,
		&ar.RedirectURI, &ar.UserCode, &ar.VerifyURI, &intervalMS, &created, &expires}
	if id == "" {
		dest = append([]any{&ar.ID}, dest...)
	}
	if err := r.Scan(dest...); err != nil {
		return nil, err
	}
	ar.Interval = time.Duration(intervalMS) * time.Millisecond
	ar.CreatedAt, ar.ExpiresAt = created.UTC(), expires.UTC()
	return &ar, nil
}

// CreateAuthRequest implements [tokenbroker.ConnectStore]. CreatedAt is
// set from the database clock.
func (s *Store) CreateAuthRequest(ctx context.Context, r *tokenbroker.AuthRequest) error {
	if r.ID == "" || r.ExpiresAt.IsZero() {
		return tokenbroker.Errorf(tokenbroker.EINVALID, "an auth request needs an id and an expiry")
	}
	var created time.Time
	err := s.pool.QueryRow(ctx, `
		INSERT INTO auth_requests (id_hash, kind, session_hash, user_id, provider_id, secret, key_id,
			redirect_uri, user_code, verify_uri, interval_ms, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		RETURNING created_at`,
		hashID(r.ID), r.Kind, sessionHash(r.SessionID), r.UserID, r.ProviderID, r.Secret, r.KeyID,
		r.RedirectURI, r.UserCode, r.VerifyURI, r.Interval.Milliseconds(), r.ExpiresAt).Scan(&created)
	if err != nil {
		return translate(err, "auth request")
	}
	r.CreatedAt = created.UTC()
	return nil
}

// GetAuthRequest implements [tokenbroker.ConnectStore].
func (s *Store) GetAuthRequest(ctx context.Context, id string) (*tokenbroker.AuthRequest, error) {
	r, err := scanAuthRequest(s.pool.QueryRow(ctx, `
		SELECT `+authRequestColumns+` FROM auth_requests
		WHERE id_hash = $1 AND expires_at > now()`, hashID(id)), id)
	if err != nil {
		return nil, translate(err, "auth request")
	}
	return r, nil
}

// ConsumeAuthRequest implements [tokenbroker.ConnectStore]: one DELETE …
// RETURNING, so of concurrent consumers exactly one gets the request.
func (s *Store) ConsumeAuthRequest(ctx context.Context, id string) (*tokenbroker.AuthRequest, error) {
	r, err := scanAuthRequest(s.pool.QueryRow(ctx, `
		DELETE FROM auth_requests
		WHERE id_hash = $1 AND expires_at > now()
		RETURNING `+authRequestColumns, hashID(id)), id)
	if err != nil {
		return nil, translate(err, "auth request")
	}
	return r, nil
}

// ListAuthRequestsNotSealedBy implements [tokenbroker.ConnectStore]. The
// store keeps only the hash of a request's id, so the returned requests
// carry that hash as their ID; [Store.ResealAuthRequest] accepts them.
func (s *Store) ListAuthRequestsNotSealedBy(ctx context.Context, keyID string, limit int) ([]*tokenbroker.AuthRequest, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id_hash, `+authRequestColumns+` FROM auth_requests
		WHERE key_id <> $1 AND expires_at > now()
		ORDER BY id_hash LIMIT $2`, keyID, limit)
	return collect(rows, err, "auth requests", func(r pgx.Row) (*tokenbroker.AuthRequest, error) { return scanAuthRequest(r, "") })
}

// ResealAuthRequest implements [tokenbroker.ConnectStore]: it rewrites
// Secret and KeyID of the request whose stored hash is r.ID (as returned
// by [Store.ListAuthRequestsNotSealedBy]), or returns
// [tokenbroker.ENOTFOUND] if it was consumed or deleted meanwhile.
func (s *Store) ResealAuthRequest(ctx context.Context, r *tokenbroker.AuthRequest) error {
	tag, err := s.pool.Exec(ctx,
		`UPDATE auth_requests SET secret = $2, key_id = $3 WHERE id_hash = $1`, r.ID, r.Secret, r.KeyID)
	ok, err := won(tag, err, "auth request")
	if err != nil {
		return err
	}
	if !ok {
		return tokenbroker.Errorf(tokenbroker.ENOTFOUND, "auth request not found")
	}
	return nil
}

// DeleteExpired implements [tokenbroker.ConnectStore] in one statement.
func (s *Store) DeleteExpired(ctx context.Context) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `
		WITH a AS (DELETE FROM connect_sessions WHERE expires_at <= now() RETURNING 1),
		     b AS (DELETE FROM auth_requests WHERE expires_at <= now() RETURNING 1)
		SELECT (SELECT count(*) FROM a) + (SELECT count(*) FROM b)`).Scan(&n)
	return n, translate(err, "expired sessions")
}

// sessionHash is what auth_requests keeps of a code flow's connect
// session: its hash, never the id (the secret of the connect URL).
func sessionHash(sessionID string) string {
	if sessionID == "" {
		return ""
	}
	return hashID(sessionID)
}

// hashID is what the store keeps and looks up of a secret id.
func hashID(id string) string { return tokenbroker.HashID(id) }
