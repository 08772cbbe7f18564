package postgres

import (
	"context"
	"io/fs"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/tokenbroker/tokenbroker/store/storetest"
)

// ForceSchemaVersion records version as applied, to simulate a database
// migrated by a newer binary.
func (s *Store) ForceSchemaVersion(ctx context.Context, version int64) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO `+VersionTable+` (version_id, is_applied) VALUES ($1, true)`, version)
	return err
}

// MigrateWithout applies every embedded migration but skip, as a binary
// built before skip landed (with later numbers) would have.
func (s *Store) MigrateWithout(ctx context.Context, skip int64) error {
	sub, err := fs.Sub(migrationsFS, "migrations")
	if err != nil {
		return err
	}
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, storetest.MigrationsWithout(sub, skip),
		goose.WithTableName(VersionTable), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return err
	}
	_, err = p.Up(ctx)
	return err
}

// migrateProvider is a goose provider of the embedded migrations.
func (s *Store) migrateProvider() (*goose.Provider, func(), error) {
	sub, err := fs.Sub(migrationsFS, "migrations")
	if err != nil {
		return nil, nil, err
	}
	db := stdlib.OpenDBFromPool(s.pool)
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithTableName(VersionTable), goose.WithDisableGlobalRegistry(true), goose.WithAllowOutofOrder(true))
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return p, func() { db.Close() }, nil
}

// MigrateTo applies the embedded migrations up to version.
func (s *Store) MigrateTo(ctx context.Context, version int64) error {
	p, done, err := s.migrateProvider()
	if err != nil {
		return err
	}
	defer done()
	_, err = p.UpTo(ctx, version)
	return err
}

// MigrateDownTo rolls the embedded migrations back to version.
func (s *Store) MigrateDownTo(ctx context.Context, version int64) error {
	p, done, err := s.migrateProvider()
	if err != nil {
		return err
	}
	defer done()
	_, err = p.DownTo(ctx, version)
	return err
}
