package postgres

import "context"

// ForceSchemaVersion records version as applied, to simulate a database
// migrated by a newer binary.
func (s *Store) ForceSchemaVersion(ctx context.Context, version int64) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO `+VersionTable+` (version_id, is_applied) VALUES ($1, true)`, version)
	return err
}
