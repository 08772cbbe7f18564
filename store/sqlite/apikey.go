package sqlite

import (
	"context"
	"database/sql"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

const apiKeyColumns = `id, prefix, secret_hash, name, scopes, users, providers, created_at, revoked_at`

func scanAPIKey(r rowScanner) (*tokenbroker.APIKey, error) {
	var (
		k                        tokenbroker.APIKey
		scopes, users, providers string
		created, revoked         sql.NullInt64
	)
	if err := r.Scan(&k.ID, &k.Prefix, &k.SecretHash, &k.Name, &scopes, &users, &providers, &created, &revoked); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		s string
		v *[]string
	}{{scopes, &k.Scopes}, {users, &k.Users}, {providers, &k.Providers}} {
		if err := unmarshalStrings(f.s, f.v); err != nil {
			return nil, err
		}
	}
	k.CreatedAt = fromMS(created)
	k.RevokedAt = fromMS(revoked)
	return &k, nil
}

// CreateAPIKey implements [tokenbroker.APIKeyStore]. A taken prefix gives
// [tokenbroker.ECONFLICT].
func (s *Store) CreateAPIKey(ctx context.Context, k *tokenbroker.APIKey) (*tokenbroker.APIKey, error) {
	if k.Prefix == "" || len(k.SecretHash) == 0 {
		return nil, tokenbroker.Errorf(tokenbroker.EINVALID, "an API key needs a prefix and a secret hash")
	}
	scopes, err := marshalStrings(k.Scopes)
	if err != nil {
		return nil, err
	}
	users, err := marshalStrings(k.Users)
	if err != nil {
		return nil, err
	}
	providers, err := marshalStrings(k.Providers)
	if err != nil {
		return nil, err
	}
	out, err := scanAPIKey(s.wdb.QueryRowContext(ctx, `
		INSERT INTO api_keys (prefix, secret_hash, name, scopes, users, providers, created_at)
		VALUES (?, ?, ?, ?, ?, ?, `+nowMS+`)
		RETURNING `+apiKeyColumns,
		k.Prefix, k.SecretHash, k.Name, scopes, users, providers))
	if err != nil {
		return nil, translate(err, "API key")
	}
	return out, nil
}

// GetAPIKeyByPrefix implements [tokenbroker.APIKeyStore].
func (s *Store) GetAPIKeyByPrefix(ctx context.Context, prefix string) (*tokenbroker.APIKey, error) {
	k, err := scanAPIKey(s.rdb.QueryRowContext(ctx,
		`SELECT `+apiKeyColumns+` FROM api_keys WHERE prefix = ?`, prefix))
	if err != nil {
		return nil, translate(err, "API key")
	}
	return k, nil
}

// ListAPIKeys implements [tokenbroker.APIKeyStore].
func (s *Store) ListAPIKeys(ctx context.Context) ([]*tokenbroker.APIKey, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys ORDER BY id`)
	return collect(rows, err, "API keys", scanAPIKey)
}

// RevokeAPIKey implements [tokenbroker.APIKeyStore]. Revoking a revoked
// key keeps its first revocation time.
func (s *Store) RevokeAPIKey(ctx context.Context, id int64) error {
	var got int64
	err := s.wdb.QueryRowContext(ctx, `
		UPDATE api_keys SET revoked_at = COALESCE(revoked_at, `+nowMS+`)
		WHERE id = ? RETURNING id`, id).Scan(&got)
	return translate(err, "API key")
}
