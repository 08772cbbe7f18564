package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	tokenbroker "github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/store/internal/migrations"
	"github.com/tokenbroker/tokenbroker/store/internal/signal"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// VersionTable is the table in which goose records applied migrations.
const VersionTable = "tokenbroker_schema_migrations"

// Channel is the LISTEN/NOTIFY channel of link changes; the payload is the
// link id in decimal.
const Channel = "tokenbroker_link"

// notifyFrom is the tail of a statement that signals every link id of the
// data-modifying CTE named u: the NOTIFY is part of the write's own
// statement, so it is delivered exactly when the write commits.
const notifyFrom = `SELECT pg_notify('` + Channel + `', u.id::text) FROM u`

// Store is the PostgreSQL implementation of [tokenbroker.Store] and
// [tokenbroker.Signaler]. Open it with [Open]; apply the schema with
// [Store.Migrate]. Many replicas may share one database.
type Store struct {
	pool *pgxpool.Pool
	hub  *signal.Hub
	// Logger receives the listener's connection problems; set it before
	// the first Subscribe. Default: slog.Default().
	Logger *slog.Logger

	listenOnce   sync.Once
	listenCtx    context.Context
	listenCancel context.CancelFunc
	listenDone   chan struct{}
	// listening counts successful (re)connections of the listener, for tests.
	listenMu  sync.Mutex
	listening int
}

var (
	_ tokenbroker.Store    = (*Store)(nil)
	_ tokenbroker.Signaler = (*Store)(nil)
)

// Open connects to the database at url (a postgres:// URL or a libpq
// keyword string; pgxpool's pool_* parameters apply) and checks that its
// schema is not newer than this binary ([*tokenbroker.SchemaTooNewError]).
// It does not migrate: call [Store.Migrate]. Errors never contain the
// password.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: invalid database URL: %s", cleanError(err, url))
	}
	// Defaults a server needs, unless the URL says otherwise: a bound on
	// connecting (an unreachable host must not hang start-up for minutes)
	// and more than pgxpool's max(4, NumCPU) connections for the request
	// bursts of a token broker.
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = 16
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: invalid database URL: %s", cleanError(err, url))
	}
	s := &Store{pool: pool, hub: signal.NewHub(), listenDone: make(chan struct{})}
	s.listenCtx, s.listenCancel = context.WithCancel(context.Background())
	if err := pool.Ping(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("postgres: cannot connect to %s: %s", describe(cfg), connectCause(err, url))
	}
	current, latest, err := s.SchemaVersion(ctx)
	if err != nil {
		s.Close()
		return nil, errors.New(cleanError(err, url))
	}
	if current > latest {
		s.Close()
		return nil, &tokenbroker.SchemaTooNewError{Current: current, Latest: latest}
	}
	return s, nil
}

// describe names the database of cfg without credentials.
func describe(cfg *pgxpool.Config) string {
	return fmt.Sprintf("database %q on %s:%d as %q", cfg.ConnConfig.Database, cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.User)
}

// connectCause returns the innermost useful reason a connection failed:
// the server's message, the network error, or else the whole error.
func connectCause(err error, connURL string) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return cleanError(errors.New(pe.Message), connURL)
	}
	var ne *net.OpError
	if errors.As(err, &ne) && ne.Err != nil {
		return cleanError(ne.Err, connURL)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	return cleanError(err, connURL)
}

var (
	parsePrefix = regexp.MustCompile("^cannot parse `[^`]*`: ")
	spaces      = regexp.MustCompile(`\s+`)
)

// cleanError renders err as one line without the password of connURL.
func cleanError(err error, connURL string) string {
	msg := parsePrefix.ReplaceAllString(err.Error(), "")
	// Connection errors list one line per attempt; keep distinct ones.
	var parts []string
	for _, line := range strings.Split(msg, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !slices.Contains(parts, line) {
			parts = append(parts, line)
		}
	}
	msg = spaces.ReplaceAllString(strings.Join(parts, " "), " ")
	for _, secret := range passwords(connURL) {
		msg = strings.ReplaceAll(msg, secret, "xxxxx")
	}
	return msg
}

// passwords returns the password(s) a connection string carries, in the
// forms they may be echoed.
func passwords(connURL string) []string {
	var out []string
	if u, err := url.Parse(connURL); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			out = append(out, p, url.QueryEscape(p), url.PathEscape(p))
		}
		if p := u.Query().Get("password"); p != "" {
			out = append(out, p)
		}
	}
	if m := regexp.MustCompile(`password=('[^']*'|\S+)`).FindAllStringSubmatch(connURL, -1); m != nil {
		for _, x := range m {
			out = append(out, strings.Trim(x[1], "'"))
		}
	}
	return out
}

// Close stops the listener and closes the pool.
func (s *Store) Close() error {
	s.listenCancel()
	s.listenOnce.Do(func() { close(s.listenDone) }) // never started: nothing to wait for
	<-s.listenDone
	s.pool.Close()
	return nil
}

// Pool returns the store's pool, for tests and tools.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// knownVersions lists the schema versions embedded in this binary.
func knownVersions() []int64 { return migrations.Versions(migrationsFS, "migrations") }

// LatestVersion returns the newest schema version embedded in this binary.
func LatestVersion() int64 { return migrations.Latest(knownVersions()) }

// migrateLockID is the advisory lock that serializes migrations of
// replicas starting together.
const migrateLockID int64 = 0x746f6b656e62 // "tokenb"

// Migrate applies the embedded migrations that the database lacks. It
// holds a session advisory lock meanwhile (a blocking wait, no polling),
// so that replicas starting together migrate once. It refuses a database
// whose schema is newer than this binary.
func (s *Store) Migrate(ctx context.Context) error {
	// Migrating needs several connections at once (the lock's session and
	// goose's); a pool of its own keeps that from deadlocking a store
	// opened with pool_max_conns=1.
	mcfg := s.pool.Config()
	mcfg.MaxConns, mcfg.MinConns = 4, 0
	mpool, err := pgxpool.NewWithConfig(ctx, mcfg)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	defer mpool.Close()
	conn, err := mpool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrateLockID); err != nil {
		return fmt.Errorf("postgres: migrate: lock: %w", err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, migrateLockID); err != nil {
			conn.Conn().Close(uctx) // ending the session releases the lock
		}
	}()

	current, latest, err := s.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if current > latest {
		return &tokenbroker.SchemaTooNewError{Current: current, Latest: latest}
	}
	if current == latest {
		return nil
	}
	sub, err := fs.Sub(migrationsFS, "migrations")
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	db := stdlib.OpenDBFromPool(mpool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithTableName(VersionTable),
		goose.WithDisableGlobalRegistry(true),
		// Migration numbers are reserved per change, and changes land in
		// any order: a database at 00005 still gets 00003 when it arrives.
		goose.WithAllowOutofOrder(true),
	)
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return nil
}

// SchemaVersion implements [tokenbroker.Store]. It only reads: a database
// never migrated has version 0.
func (s *Store) SchemaVersion(ctx context.Context) (current, latest int64, err error) {
	latest = LatestVersion()
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, VersionTable).Scan(&exists); err != nil {
		return 0, latest, translate(err, "schema version")
	}
	if !exists {
		return 0, latest, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT version_id FROM `+VersionTable+` WHERE is_applied`)
	if err != nil {
		return 0, latest, translate(err, "schema version")
	}
	applied, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, latest, translate(err, "schema version")
	}
	return migrations.Current(applied, knownVersions()), latest, nil
}

// Ping implements [tokenbroker.Store].
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return translate(err, "ping")
	}
	return nil
}

// Now implements [tokenbroker.Store]: the database's clock.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	var t time.Time
	if err := s.pool.QueryRow(ctx, `SELECT now()`).Scan(&t); err != nil {
		return time.Time{}, translate(err, "now")
	}
	return t.UTC(), nil
}

// collect reads every row of a query's answer (rows, err) with scan;
// what names the rows in the translated errors.
func collect[T any](rows pgx.Rows, err error, what string, scan func(pgx.Row) (T, error)) ([]T, error) {
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
// ENOTFOUND, a unique violation to ECONFLICT.
func translate(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return tokenbroker.Errorf(tokenbroker.ENOTFOUND, "%s not found", what)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return tokenbroker.Errorf(tokenbroker.ECONFLICT, "%s already exists", what)
	}
	if unavailable(err) {
		return &tokenbroker.StoreUnavailableError{Op: what, Err: fmt.Errorf("postgres: %w", err)}
	}
	return fmt.Errorf("postgres: %s: %w", what, err)
}

// unavailable reports whether err means the database could not be reached
// or went away, rather than that a statement failed: connecting failed, the
// connection broke, or the server is shutting down or starting.
func unavailable(err error) bool {
	var (
		ce *pgconn.ConnectError
		pe *pgconn.PgError
		ne net.Error
	)
	switch {
	case errors.As(err, &ce), pgconn.SafeToRetry(err),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return true
	case errors.As(err, &pe):
		// Class 08: connection exception; 57P01-57P03: admin shutdown,
		// crash shutdown, cannot connect now.
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	case errors.As(err, &ne):
		return true
	}
	return false
}

// nullTime is nil for the zero time.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// fromNull converts a scanned nullable time to UTC, nil to the zero time.
func fromNull(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// nonNil makes a nil slice an empty array (the columns are NOT NULL).
func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

// nilIfEmpty normalises scanned empty arrays to nil, as SQLite returns them.
func nilIfEmpty(v []string) []string {
	if len(v) == 0 {
		return nil
	}
	return v
}
