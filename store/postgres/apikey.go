package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

const apiKeyColumns = `id, prefix, secret_hash, name, scopes, users, providers, created_at, revoked_at`

func scanAPIKey(r pgx.Row) (*tokenbroker.APIKey, error) {
	var (
		k       tokenbroker.APIKey
		created time.Time
		revoked *time.Time
	)
	if err := r.Scan(&k.ID, &k.Prefix, &k.SecretHash, &k.Name, &k.Scopes, &k.Users, &k.Providers, &created, &revoked); err != nil {
		return nil, err
	}
	k.Scopes, k.Users, k.Providers = nilIfEmpty(k.Scopes), nilIfEmpty(k.Users), nilIfEmpty(k.Providers)
	k.CreatedAt, k.RevokedAt = created.UTC(), fromNull(revoked)
	return &k, nil
}

// CreateAPIKey implements [tokenbroker.APIKeyStore]. A taken prefix gives
// [tokenbroker.ECONFLICT].
func (s *Store) CreateAPIKey(ctx context.Context, k *tokenbroker.APIKey) (*tokenbroker.APIKey, error) {
	if k.Prefix == "" || len(k.SecretHash) == 0 {
		return nil, tokenbroker.Errorf(tokenbroker.EINVALID, "an API key needs a prefix and a secret hash")
	}
	out, err := scanAPIKey(s.pool.QueryRow(ctx, `
		INSERT INTO api_keys (prefix, secret_hash, name, scopes, users, providers)
		VALUES ($1, $2, $3, $4, $5, $6)
		RETURNING `+apiKeyColumns,
		k.Prefix, k.SecretHash, k.Name, nonNil(k.Scopes), nonNil(k.Users), nonNil(k.Providers)))
	if err != nil {
		return nil, translate(err, "API key")
	}
	return out, nil
}

// GetAPIKeyByPrefix implements [tokenbroker.APIKeyStore].
func (s *Store) GetAPIKeyByPrefix(ctx context.Context, prefix string) (*tokenbroker.APIKey, error) {
	k, err := scanAPIKey(s.pool.QueryRow(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE prefix = $1`, prefix))
	if err != nil {
		return nil, translate(err, "API key")
	}
	return k, nil
}

// ListAPIKeys implements [tokenbroker.APIKeyStore].
func (s *Store) ListAPIKeys(ctx context.Context) ([]*tokenbroker.APIKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+apiKeyColumns+` FROM api_keys ORDER BY id`)
	return collect(rows, err, "API keys", scanAPIKey)
}

// RevokeAPIKey implements [tokenbroker.APIKeyStore]. Revoking a revoked
// key keeps its first revocation time.
func (s *Store) RevokeAPIKey(ctx context.Context, id int64) error {
	var got int64
	err := s.pool.QueryRow(ctx, `
		UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now())
		WHERE id = $1 RETURNING id`, id).Scan(&got)
	return translate(err, "API key")
}
