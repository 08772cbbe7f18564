package sqlite

import (
	"context"
	"io/fs"

	"github.com/pressly/goose/v3"

	"github.com/tokenbroker/tokenbroker/store/storetest"
)

// ForceSchemaVersion records version as applied, to simulate a database
// migrated by a newer binary.
func (s *Store) ForceSchemaVersion(ctx context.Context, version int64) error {
	_, err := s.wdb.ExecContext(ctx, `INSERT INTO `+VersionTable+` (version_id, is_applied) VALUES (?, 1)`, version)
	return err
}

// MigrateWithout applies every embedded migration but skip, as a binary
// built before skip landed (with later numbers) would have.
func (s *Store) MigrateWithout(ctx context.Context, skip int64) error {
	sub, err := fs.Sub(migrationsFS, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, s.wdb, storetest.MigrationsWithout(sub, skip),
		goose.WithTableName(VersionTable), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return err
	}
	_, err = p.Up(ctx)
	return err
}

// MigrateTo applies the embedded migrations up to version.
func (s *Store) MigrateTo(ctx context.Context, version int64) error {
	p, err := s.provider()
	if err != nil {
		return err
	}
	_, err = p.UpTo(ctx, version)
	return err
}

// MigrateDownTo rolls the embedded migrations back to version.
func (s *Store) MigrateDownTo(ctx context.Context, version int64) error {
	p, err := s.provider()
	if err != nil {
		return err
	}
	_, err = p.DownTo(ctx, version)
	return err
}

// Exec runs a statement on the writer connection.
func (s *Store) Exec(ctx context.Context, q string, args ...any) error {
	_, err := s.wdb.ExecContext(ctx, q, args...)
	return err
}
