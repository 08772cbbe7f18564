package sqlite

import (
	"context"
	"database/sql"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

const sessionColumns = `user_id, providers, return_url, created_by, created_at, expires_at, claimed_at`

// CreateConnectSession implements [tokenbroker.ConnectStore]. CreatedAt is
// set from the database clock.
func (s *Store) CreateConnectSession(ctx context.Context, cs *tokenbroker.ConnectSession) error {
	if cs.ID == "" || cs.ExpiresAt.IsZero() {
		return tokenbroker.Errorf(tokenbroker.EINVALID, "a connect session needs an id and an expiry")
	}
	providers, err := marshalStrings(cs.Providers)
	if err != nil {
		return err
	}
	var created int64
	err = s.wdb.QueryRowContext(ctx, `
		INSERT INTO connect_sessions (id_hash, user_id, providers, return_url, created_by, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, `+nowMS+`, ?)
		RETURNING created_at`,
		hashID(cs.ID), cs.UserID, providers, cs.ReturnURL, cs.CreatedBy, cs.ExpiresAt.UnixMilli()).Scan(&created)
	if err != nil {
		return translate(err, "connect session")
	}
	cs.CreatedAt = fromMS(sql.NullInt64{Int64: created, Valid: true})
	return nil
}

// GetConnectSession implements [tokenbroker.ConnectStore]; expiry is
// judged on the database clock.
func (s *Store) GetConnectSession(ctx context.Context, id string) (*tokenbroker.ConnectSession, error) {
	var (
		cs                        = tokenbroker.ConnectSession{ID: id}
		providers                 string
		created, expires, claimed sql.NullInt64
	)
	err := s.rdb.QueryRowContext(ctx, `
		SELECT `+sessionColumns+` FROM connect_sessions
		WHERE id_hash = ? AND expires_at > `+nowMS, hashID(id)).
		Scan(&cs.UserID, &providers, &cs.ReturnURL, &cs.CreatedBy, &created, &expires, &claimed)
	if err != nil {
		return nil, translate(err, "connect session")
	}
	if err := unmarshalStrings(providers, &cs.Providers); err != nil {
		return nil, err
	}
	cs.CreatedAt, cs.ExpiresAt, cs.ClaimedAt = fromMS(created), fromMS(expires), fromMS(claimed)
	return &cs, nil
}

// ClaimConnectSession implements [tokenbroker.ConnectStore]: one
// conditional UPDATE, so of concurrent claims exactly one wins. A missing
// or expired session gives [tokenbroker.ENOTFOUND].
func (s *Store) ClaimConnectSession(ctx context.Context, id string) (bool, error) {
	h := hashID(id)
	res, err := s.wdb.ExecContext(ctx, `
		UPDATE connect_sessions SET claimed_at = `+nowMS+`
		WHERE id_hash = ? AND claimed_at IS NULL AND expires_at > `+nowMS, h)
	ok, err := affected(res, err, "connect session")
	if ok || err != nil {
		return ok, err
	}
	// Lost: tell "already claimed" from "no such session". The decision
	// was the UPDATE above; this read only chooses the answer.
	var n int
	err = s.rdb.QueryRowContext(ctx, `
		SELECT count(*) FROM connect_sessions WHERE id_hash = ? AND expires_at > `+nowMS, h).Scan(&n)
	if err != nil {
		return false, translate(err, "connect session")
	}
	if n == 0 {
		return false, tokenbroker.Errorf(tokenbroker.ENOTFOUND, "connect session not found")
	}
	return false, nil
}

const authRequestColumns = `kind, session_hash, user_id, provider_id, secret, key_id,
	redirect_uri, user_code, verify_uri, interval_ms, created_at, expires_at`

func scanAuthRequest(r rowScanner, id string) (*tokenbroker.AuthRequest, error) {
	var (
		ar               = tokenbroker.AuthRequest{ID: id}
		intervalMS       int64
		created, expires sql.NullInt64
	)
	if id == "" {
		if err := r.Scan(&ar.ID, &ar.Kind, &ar.SessionHash, &ar.UserID, &ar.ProviderID, &ar.Secret, &ar.KeyID,
			&ar.RedirectURI, &ar.UserCode, &ar.VerifyURI, &intervalMS, &created, &expires); err != nil {
			return nil, err
		}
	} else if err := r.Scan(&ar.Kind, &ar.SessionHash, &ar.UserID, &ar.ProviderID, &ar.Secret, &ar.KeyID,
		&ar.RedirectURI, &ar.UserCode, &ar.VerifyURI, &intervalMS, &created, &expires); err != nil {
		return nil, err
	}
	ar.Interval = msDuration(intervalMS)
	ar.CreatedAt, ar.ExpiresAt = fromMS(created), fromMS(expires)
	return &ar, nil
}

// CreateAuthRequest implements [tokenbroker.ConnectStore]. CreatedAt is
// set from the database clock.
func (s *Store) CreateAuthRequest(ctx context.Context, r *tokenbroker.AuthRequest) error {
	if r.ID == "" || r.ExpiresAt.IsZero() {
		return tokenbroker.Errorf(tokenbroker.EINVALID, "an auth request needs an id and an expiry")
	}
	var created int64
	err := s.wdb.QueryRowContext(ctx, `
		INSERT INTO auth_requests (id_hash, kind, session_hash, user_id, provider_id, secret, key_id,
			redirect_uri, user_code, verify_uri, interval_ms, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, `+nowMS+`, ?)
		RETURNING created_at`,
		hashID(r.ID), r.Kind, sessionHash(r.SessionID), r.UserID, r.ProviderID, r.Secret, r.KeyID,
		r.RedirectURI, r.UserCode, r.VerifyURI, r.Interval.Milliseconds(), r.ExpiresAt.UnixMilli()).Scan(&created)
	if err != nil {
		return translate(err, "auth request")
	}
	r.CreatedAt = fromMS(sql.NullInt64{Int64: created, Valid: true})
	return nil
}

// GetAuthRequest implements [tokenbroker.ConnectStore].
func (s *Store) GetAuthRequest(ctx context.Context, id string) (*tokenbroker.AuthRequest, error) {
	r, err := scanAuthRequest(s.rdb.QueryRowContext(ctx, `
		SELECT `+authRequestColumns+` FROM auth_requests
		WHERE id_hash = ? AND expires_at > `+nowMS, hashID(id)), id)
	if err != nil {
		return nil, translate(err, "auth request")
	}
	return r, nil
}

// ConsumeAuthRequest implements [tokenbroker.ConnectStore]: one DELETE …
// RETURNING, so of concurrent consumers exactly one gets the request.
func (s *Store) ConsumeAuthRequest(ctx context.Context, id string) (*tokenbroker.AuthRequest, error) {
	r, err := scanAuthRequest(s.wdb.QueryRowContext(ctx, `
		DELETE FROM auth_requests
		WHERE id_hash = ? AND expires_at > `+nowMS+`
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
	rows, err := s.rdb.QueryContext(ctx, `
		SELECT id_hash, `+authRequestColumns+` FROM auth_requests
		WHERE key_id <> ? AND expires_at > `+nowMS+`
		ORDER BY id_hash LIMIT ?`, keyID, limit)
	return collect(rows, err, "auth requests", func(r rowScanner) (*tokenbroker.AuthRequest, error) { return scanAuthRequest(r, "") })
}

// ResealAuthRequest implements [tokenbroker.ConnectStore]: it rewrites
// Secret and KeyID of the request whose stored hash is r.ID (as returned
// by [Store.ListAuthRequestsNotSealedBy]), or returns
// [tokenbroker.ENOTFOUND] if it was consumed or deleted meanwhile.
func (s *Store) ResealAuthRequest(ctx context.Context, r *tokenbroker.AuthRequest) error {
	res, err := s.wdb.ExecContext(ctx,
		`UPDATE auth_requests SET secret = ?, key_id = ? WHERE id_hash = ?`, r.Secret, r.KeyID, r.ID)
	ok, err := affected(res, err, "auth request")
	if err != nil {
		return err
	}
	if !ok {
		return tokenbroker.Errorf(tokenbroker.ENOTFOUND, "auth request not found")
	}
	return nil
}

// DeleteExpired implements [tokenbroker.ConnectStore].
func (s *Store) DeleteExpired(ctx context.Context) (int64, error) {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return 0, translate(err, "expired sessions")
	}
	defer tx.Rollback()
	var total int64
	for _, q := range []string{
		`DELETE FROM connect_sessions WHERE expires_at <= ` + nowMS,
		`DELETE FROM auth_requests WHERE expires_at <= ` + nowMS,
	} {
		res, err := tx.ExecContext(ctx, q)
		if err != nil {
			return 0, translate(err, "expired sessions")
		}
		n, _ := res.RowsAffected()
		total += n
	}
	return total, translate(tx.Commit(), "expired sessions")
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
