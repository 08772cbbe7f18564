package sqlite

import "context"

// ForceSchemaVersion records version as applied, to simulate a database
// migrated by a newer binary.
func (s *Store) ForceSchemaVersion(ctx context.Context, version int64) error {
	_, err := s.wdb.ExecContext(ctx, `INSERT INTO `+VersionTable+` (version_id, is_applied) VALUES (?, 1)`, version)
	return err
}
