package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	tokenbroker "github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/store/postgres"
	"github.com/tokenbroker/tokenbroker/store/sqlite"
)

// sqliteFileName is the database file in the data directory.
const sqliteFileName = "tokenbroker.db"

// storeHandle is an open database: the store, its signaler, and the
// operations only the commands need.
type storeHandle interface {
	// Store returns the store (without encryption; crypt wraps it).
	Store() tokenbroker.Store
	// Signaler returns the store's link-change signals.
	Signaler() tokenbroker.Signaler
	// Kind is "sqlite" or "postgres".
	Kind() string
	// Describe names the database for humans, without credentials.
	Describe() string
	// SchemaVersion returns the applied and the newest known migration.
	SchemaVersion(ctx context.Context) (current, latest int64, err error)
	// Migrate applies the embedded migrations the database lacks.
	Migrate(ctx context.Context) error
	// Close closes the database.
	Close() error
}

type sqliteHandle struct{ s *sqlite.Store }

func (h sqliteHandle) Store() tokenbroker.Store          { return h.s }
func (h sqliteHandle) Signaler() tokenbroker.Signaler    { return h.s }
func (h sqliteHandle) Kind() string                      { return "sqlite" }
func (h sqliteHandle) Describe() string                  { return "SQLite database " + h.s.Path() }
func (h sqliteHandle) Migrate(ctx context.Context) error { return h.s.Migrate(ctx) }
func (h sqliteHandle) Close() error                      { return h.s.Close() }
func (h sqliteHandle) SchemaVersion(ctx context.Context) (int64, int64, error) {
	return h.s.SchemaVersion(ctx)
}

type postgresHandle struct {
	s    *postgres.Store
	desc string
}

func (h postgresHandle) Store() tokenbroker.Store          { return h.s }
func (h postgresHandle) Signaler() tokenbroker.Signaler    { return h.s }
func (h postgresHandle) Kind() string                      { return "postgres" }
func (h postgresHandle) Describe() string                  { return h.desc }
func (h postgresHandle) Migrate(ctx context.Context) error { return h.s.Migrate(ctx) }
func (h postgresHandle) Close() error                      { return h.s.Close() }
func (h postgresHandle) SchemaVersion(ctx context.Context) (int64, int64, error) {
	return h.s.SchemaVersion(ctx)
}

// openStore opens the database databaseURL names: empty for the embedded
// SQLite file <dataDir>/tokenbroker.db (dataDir created with mode 0700),
// postgres:// or postgresql:// for PostgreSQL, sqlite:///path/file.db or
// file:/path/file.db for SQLite at a path. It does not migrate. Its errors
// are one line and never contain the URL's password.
func openStore(ctx context.Context, databaseURL, dataDir string) (storeHandle, error) {
	kind, location, err := parseDatabaseURL(databaseURL, dataDir)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "postgres":
		s, err := postgres.Open(ctx, databaseURL)
		if err != nil {
			return nil, storeError(err)
		}
		return postgresHandle{s: s, desc: location}, nil
	default:
		if databaseURL == "" {
			if err := os.MkdirAll(dataDir, 0o700); err != nil {
				return nil, fmt.Errorf("create data directory: %w", err)
			}
		}
		s, err := sqlite.Open(ctx, location)
		if err != nil {
			return nil, storeError(err)
		}
		return sqliteHandle{s: s}, nil
	}
}

// storeError keeps the schema error's own message (it says what to do).
func storeError(err error) error {
	var tooNew *tokenbroker.SchemaTooNewError
	if errors.As(err, &tooNew) {
		return tooNew
	}
	return err
}

// schemeRe is an RFC 3986 scheme; anything else is not echoed (it could
// hold a password).
var schemeRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]{0,31}$`)

// parseDatabaseURL returns the store kind and, for SQLite, the file path;
// for PostgreSQL a description without credentials.
func parseDatabaseURL(databaseURL, dataDir string) (kind, location string, err error) {
	if databaseURL == "" {
		if dataDir == "" {
			return "", "", errors.New("no database: set --database-url or --data-dir")
		}
		return "sqlite", filepath.Join(dataDir, sqliteFileName), nil
	}
	scheme, rest, ok := strings.Cut(databaseURL, ":")
	if !ok || !schemeRe.MatchString(scheme) {
		return "", "", errors.New("invalid database URL: want postgres://..., sqlite:///path/file.db or file:/path/file.db (or none, for SQLite in the data directory)")
	}
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
		u, err := url.Parse(databaseURL)
		if err != nil {
			// url.Parse errors quote the URL; do not echo it.
			return "", "", errors.New("invalid database URL: cannot parse the postgres:// URL")
		}
		db := strings.TrimPrefix(u.Path, "/")
		return "postgres", fmt.Sprintf("PostgreSQL database %q on %s", db, u.Host), nil
	case "sqlite", "file":
		path := rest
		if strings.HasPrefix(path, "//") {
			// sqlite:///abs/path or file:///abs/path; a host part is not supported.
			host, p, _ := strings.Cut(path[2:], "/")
			if host != "" && host != "localhost" {
				return "", "", fmt.Errorf("invalid database URL: %s: URLs name a local file (%s:///path/file.db)", scheme, scheme)
			}
			path = "/" + p
		}
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
		if p, err := url.PathUnescape(path); err == nil {
			path = p
		}
		if path == "" || path == "/" {
			return "", "", fmt.Errorf("invalid database URL: %s: URL without a file path", scheme)
		}
		return "sqlite", path, nil
	}
	return "", "", fmt.Errorf("unsupported database URL scheme %q: want postgres://, postgresql://, sqlite:// or file: (or none, for SQLite in the data directory)", scheme)
}
