package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	tokenbroker "github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/store/internal/migrations"
	"github.com/tokenbroker/tokenbroker/store/internal/signal"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// VersionTable is the table in which goose records applied migrations.
const VersionTable = "tokenbroker_schema_migrations"

// nowMS is the database clock in unix milliseconds. SQLite evaluates
// 'now' once per statement step, so every use within one statement agrees.
const nowMS = "CAST(unixepoch('subsec') * 1000 AS INTEGER)"

// Store is the SQLite implementation of [tokenbroker.Store] and
// [tokenbroker.Signaler]. Open it with [Open]; apply the schema with
// [Store.Migrate].
type Store struct {
	path string
	// wdb holds the one connection every write goes through, so writers
	// of this process queue in Go instead of failing with SQLITE_BUSY.
	wdb *sql.DB
	// rdb is a pool of query-only connections; WAL lets them read while
	// the writer writes.
	rdb *sql.DB
	hub *signal.Hub
}

var (
	_ tokenbroker.Store    = (*Store)(nil)
	_ tokenbroker.Signaler = (*Store)(nil)
)

// Open opens (creating if missing, with its directory) the SQLite
// database at path. It checks that the schema is not newer than this
// binary ([*tokenbroker.SchemaTooNewError]) but does not migrate: call
// [Store.Migrate].
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, tokenbroker.Errorf(tokenbroker.EINVALID, "sqlite: empty database path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: database path %q: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: create directory of %s: %w", abs, err)
	}
	// The file holds (sealed) tokens: only its owner may read it. SQLite
	// gives the -wal and -shm files the same mode.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	f.Close()
	s := &Store{path: abs, hub: signal.NewHub()}

	// The pragmas are per connection. busy_timeout still matters with a
	// single writer: other processes (tokenbroker migrate, links import)
	// may write the same file, and WAL checkpoints can briefly block readers.
	base := (&url.URL{Scheme: "file", Opaque: (&url.URL{Path: abs}).EscapedPath()}).String()
	common := "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
	s.wdb, err = sql.Open("sqlite", base+"?_pragma=journal_mode(WAL)&"+common+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxIdleTime(0)
	s.wdb.SetConnMaxLifetime(0)
	// The first connection switches the file to WAL before any reader opens it.
	if err := s.wdb.PingContext(ctx); err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	s.rdb, err = sql.Open("sqlite", base+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	s.rdb.SetMaxOpenConns(n)
	s.rdb.SetMaxIdleConns(n)

	current, latest, err := s.SchemaVersion(ctx)
	if err != nil {
		s.Close()
		return nil, err
	}
	if current > latest {
		s.Close()
		return nil, &tokenbroker.SchemaTooNewError{Current: current, Latest: latest}
	}
	return s, nil
}

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// Close closes the database. It does not wait for subscribers; their
// channels simply receive no more signals.
func (s *Store) Close() error {
	return errors.Join(s.rdb.Close(), s.wdb.Close())
}

func (s *Store) provider() (*goose.Provider, error) {
	sub, err := fs.Sub(migrationsFS, "migrations")
	if err != nil {
		return nil, err
	}
	return goose.NewProvider(goose.DialectSQLite3, s.wdb, sub,
		goose.WithTableName(VersionTable),
		goose.WithDisableGlobalRegistry(true),
		// Migration numbers are reserved per change, and changes land in
		// any order: a database at 00005 still gets 00003 when it arrives.
		goose.WithAllowOutofOrder(true),
	)
}

// knownVersions lists the schema versions embedded in this binary.
func knownVersions() []int64 { return migrations.Versions(migrationsFS, "migrations") }

// LatestVersion returns the newest schema version embedded in this binary.
func LatestVersion() int64 { return migrations.Latest(knownVersions()) }

// Migrate applies the embedded migrations that the database lacks. It
// refuses a database whose schema is newer than this binary.
func (s *Store) Migrate(ctx context.Context) error {
	current, latest, err := s.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if current > latest {
		return &tokenbroker.SchemaTooNewError{Current: current, Latest: latest}
	}
	p, err := s.provider()
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	return nil
}

// SchemaVersion implements [tokenbroker.Store]. It only reads: a database
// never migrated has version 0.
func (s *Store) SchemaVersion(ctx context.Context) (current, latest int64, err error) {
	latest = LatestVersion()
	var n int
	err = s.rdb.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?`, VersionTable).Scan(&n)
	if err != nil {
		return 0, latest, fmt.Errorf("sqlite: read schema version of %s: %w", s.path, err)
	}
	if n == 0 {
		return 0, latest, nil
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT version_id FROM `+VersionTable+` WHERE is_applied`)
	if err != nil {
		return 0, latest, fmt.Errorf("sqlite: read schema version of %s: %w", s.path, err)
	}
	defer rows.Close()
	var applied []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return 0, latest, fmt.Errorf("sqlite: read schema version of %s: %w", s.path, err)
		}
		applied = append(applied, v)
	}
	if err := rows.Err(); err != nil {
		return 0, latest, fmt.Errorf("sqlite: read schema version of %s: %w", s.path, err)
	}
	return migrations.Current(applied, knownVersions()), latest, nil
}

// Ping implements [tokenbroker.Store].
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.PingContext(ctx); err != nil {
		return translate(err, "ping")
	}
	return nil
}

// Now implements [tokenbroker.Store]: the database's clock.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	var ms int64
	if err := s.rdb.QueryRowContext(ctx, `SELECT `+nowMS).Scan(&ms); err != nil {
		return time.Time{}, translate(err, "now")
	}
	return time.UnixMilli(ms).UTC(), nil
}

// Subscribe implements [tokenbroker.Signaler] with an in-process
// broadcast: SQLite serves one replica.
func (s *Store) Subscribe(linkID int64) (<-chan struct{}, func()) {
	return s.hub.Subscribe(linkID)
}

// OnChange implements [tokenbroker.ChangeFeed]: SQLite serves one process,
// so every change is seen here.
func (s *Store) OnChange(fn func(linkID int64)) func() { return s.hub.OnChange(fn) }

// toMS converts t to unix milliseconds, the zero time to NULL.
func toMS(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

// fromMS converts unix milliseconds to a UTC time, NULL to the zero time.
func fromMS(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.UnixMilli(n.Int64).UTC()
}

// collect reads every row of a query's answer (rows, err) with scan;
// what names the rows in the translated errors.
func collect[T any](rows *sql.Rows, err error, what string, scan func(rowScanner) (T, error)) ([]T, error) {
	if err != nil {
		return nil, translate(err, what)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, translate(err, what)
		}
		out = append(out, v)
	}
	return out, translate(rows.Err(), what)
}

// translate maps driver errors to application errors: a missing row to
// ENOTFOUND, a constraint violation to ECONFLICT. what names the object
// for the message.
func translate(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return tokenbroker.Errorf(tokenbroker.ENOTFOUND, "%s not found", what)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return tokenbroker.Errorf(tokenbroker.ECONFLICT, "%s already exists", what)
		}
		// Busy past busy_timeout (another process holds the file), an I/O
		// error, a full disk: the database is unavailable, not the request
		// wrong.
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN:
			return &tokenbroker.StoreUnavailableError{Op: what, Err: fmt.Errorf("sqlite: %w", err)}
		}
	}
	return fmt.Errorf("sqlite: %s: %w", what, err)
}

// rowScanner is *sql.Row or *sql.Rows.
type rowScanner interface{ Scan(dest ...any) error }
