package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/crypt"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/store/postgres"
	"github.com/tokenbroker/tokenbroker/store/sqlite"
)

// FleetOptions configures one fleet run.
type FleetOptions struct {
	// Exe is the tokenbroker binary the replicas run, with Env as their
	// environment (the benchmark adds the store, key and provider).
	Exe      string
	Env      []string
	Links    int
	Replicas int
	Store    string // auto, sqlite, postgres
	// ProviderLatency is what fakeidp adds to each call.
	ProviderLatency time.Duration
	// Window spreads the seeded links' expiries: the first expires as the
	// replicas start, the last Window later (0: all are due at once).
	Window time.Duration
	// Duration bounds the run; it ends earlier once every link is
	// refreshed.
	Duration time.Duration
	// Interval and Concurrency are the replicas' background refresher
	// settings (0: serve's defaults).
	Interval    time.Duration
	Concurrency int
	// Log receives progress lines (nil: none).
	Log io.Writer
}

// FleetResult is what `bench fleet --json` prints.
type FleetResult struct {
	Links                int     `json:"links"`
	Replicas             int     `json:"replicas"`
	Store                string  `json:"store"`
	ProviderLatencyMS    float64 `json:"provider_latency_ms"`
	WindowS              float64 `json:"window_s"`
	RefreshInterval      string  `json:"refresh_interval"`
	RefreshConcurrency   int     `json:"refresh_concurrency"`
	SeedS                float64 `json:"seed_s"`
	ElapsedS             float64 `json:"elapsed_s"`
	Refreshes            int64   `json:"refreshes"`
	ProviderRefreshCalls int64   `json:"provider_refresh_calls"`
	// RefreshesPerS is the sustained rate: the refreshes between the
	// tenth and the ninetieth percent of the run's total, over the time
	// between them (the whole run's rate when it ends before).
	RefreshesPerS float64 `json:"refreshes_per_s"`
	// Errors counts failed refreshes (tokenbroker_refresh_failures_total),
	// lost ones and the refresher's failed actions, across replicas.
	Errors float64 `json:"errors"`
	// RSSMB is the largest peak resident set (VmHWM) of a replica.
	RSSMB float64 `json:"rss_mb"`
	// ReplicaCPUS is the CPU time (user and system) the replicas used from
	// their start to the end of the measurement, and CPUMSPerRefresh that
	// per refresh: what a refresh costs a replica whatever else the
	// machine runs (the rate depends on the cores left to it).
	ReplicaCPUS     float64 `json:"replica_cpu_s"`
	CPUMSPerRefresh float64 `json:"cpu_ms_per_refresh"`
	// ScanMS is the latency of the refresher's due-links query
	// (ListLinksExpiringBefore, one page), run by the benchmark on its own
	// connection every half second while the replicas refresh.
	ScanMS    LatencySummary `json:"scan_ms"`
	ScanP99MS float64        `json:"scan_p99_ms"`
	DBSizeMB  float64        `json:"db_size_mb"`
}

// PrintFleet writes r as a line of text, then, with asJSON, as one JSON
// object on the last line.
func PrintFleet(w io.Writer, r *FleetResult, asJSON bool) {
	fmt.Fprintf(w, "%s, %d replica(s), %d links: %d refreshes (%d provider calls, %.0f errors) in %.1fs, %.0f/s sustained, %.2f ms of replica CPU each; peak RSS %.1f MB; due-links scan p50 %.2f ms p99 %.2f ms; database %.1f MB; seeding took %.1fs\n",
		r.Store, r.Replicas, r.Links, r.Refreshes, r.ProviderRefreshCalls, r.Errors, r.ElapsedS, r.RefreshesPerS, r.CPUMSPerRefresh, r.RSSMB,
		r.ScanMS.P50, r.ScanMS.P99, r.DBSizeMB, r.SeedS)
	if asJSON {
		b, _ := json.Marshal(r)
		fmt.Fprintln(w, string(b))
	}
}

// fleetStore is the benchmark's own handle on the database: to seed it
// through the sealing store, time the due-links query and size it.
type fleetStore interface {
	tokenbroker.Store
	Migrate(ctx context.Context) error
}

// RunFleet seeds opts.Links links directly through the sealing store,
// starts the replicas with the background refresher on, and measures how
// they refresh the fleet (see `tokenbroker bench fleet --help`).
func RunFleet(ctx context.Context, o FleetOptions) (res *FleetResult, err error) {
	if o.Links < 1 || o.Replicas < 1 || o.Duration <= 0 {
		return nil, errors.New("links, replicas and duration must be positive")
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, "fleet: "+format+"\n", args...)
		}
	}
	store, err := resolveStore(o.Store, o.Replicas)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tokenbroker-fleet-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	dataDir := filepath.Join(dir, "data")

	// Refreshed tokens live long: each link is refreshed once.
	idp, err := fakeidp.Start(fakeidp.Config{AccessTokenTTL: 24 * time.Hour, Faults: fakeidp.Faults{Latency: o.ProviderLatency}})
	if err != nil {
		return nil, err
	}
	defer idp.Close()

	var dbURL string
	var st fleetStore
	switch store {
	case "postgres":
		var stop func() error
		if dbURL, stop, err = throwawayDatabase(ctx, "run one replica on SQLite: --replicas 1"); err != nil {
			return nil, err
		}
		defer stop()
		if st, err = postgres.Open(ctx, dbURL); err != nil {
			return nil, err
		}
	default:
		if st, err = sqlite.Open(ctx, filepath.Join(dataDir, "tokenbroker.db")); err != nil {
			return nil, err
		}
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return nil, err
	}
	key, err := crypt.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	ring, err := crypt.ParseKeys(key)
	if err != nil {
		return nil, err
	}

	res = &FleetResult{Links: o.Links, Replicas: o.Replicas, Store: store, WindowS: o.Window.Seconds(),
		ProviderLatencyMS: float64(o.ProviderLatency.Microseconds()) / 1000, RefreshConcurrency: o.Concurrency}
	if o.Interval > 0 {
		res.RefreshInterval = o.Interval.String()
	}
	seedStart := time.Now()
	if err := seedFleet(ctx, st, ring, idp, o.Links, seedStart, o.Window, logf); err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	res.SeedS = time.Since(seedStart).Seconds()
	logf("seeded %d links in %.1fs", o.Links, res.SeedS)

	env := append(slices.Clip(o.Env), ReplicaEnv(idp, key, dbURL, dataDir)...)
	env = append(env, "TOKENBROKER_LOG_LEVEL=warn", "TOKENBROKER_BACKGROUND_REFRESH=true")
	if o.Interval > 0 {
		env = append(env, "TOKENBROKER_BACKGROUND_REFRESH_INTERVAL="+o.Interval.String())
	}
	if o.Concurrency > 0 {
		env = append(env, "TOKENBROKER_BACKGROUND_REFRESH_CONCURRENCY="+strconv.Itoa(o.Concurrency))
	}
	var replicas []*Replica
	defer func() {
		for _, r := range replicas {
			if serr := r.Stop(); serr != nil && err == nil {
				err = serr
			}
		}
	}()
	before := idp.Stats()
	for i := range o.Replicas {
		r, err := StartReplica(ctx, fmt.Sprintf("replica-%d", i), o.Exe,
			[]string{"serve", "--addr", "127.0.0.1:0", "--replica-id", fmt.Sprintf("r%d", i)}, env)
		if err != nil {
			return nil, err
		}
		replicas = append(replicas, r)
	}
	logf("%d replica(s) up", len(replicas))

	// Measure: the refreshes committed (scraped), the due-links query
	// (timed on the benchmark's own connection), until every link is
	// refreshed or the duration is over.
	start := time.Now()
	type point struct {
		at time.Duration
		n  float64
	}
	var points []point
	var scans []float64
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(o.Duration)
	defer deadline.Stop()
	lastLog := time.Now()
loop:
	for {
		select {
		case <-tick.C:
		case <-deadline.C:
			break loop
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		n, err := scrapeAll(ctx, replicas, "tokenbroker_refresh_committed_total")
		if err != nil {
			return nil, err
		}
		points = append(points, point{time.Since(start), n})
		t0 := time.Now()
		if _, err := st.ListLinksExpiringBefore(ctx, time.Now(), tokenbroker.ExpiryCursor{}, 500); err != nil {
			return nil, fmt.Errorf("due-links query: %w", err)
		}
		scans = append(scans, float64(time.Since(t0).Microseconds())/1000)
		if time.Since(lastLog) > 10*time.Second {
			logf("%.0fs: %.0f refreshes", time.Since(start).Seconds(), n)
			lastLog = time.Now()
		}
		if n >= float64(o.Links) {
			break
		}
	}
	res.ElapsedS = time.Since(start).Seconds()
	if len(points) > 0 {
		total := points[len(points)-1].n
		// Sustained: from the first point past 10% of the total to the
		// first past 90%.
		lo := slices.IndexFunc(points, func(p point) bool { return p.n >= total/10 })
		hi := slices.IndexFunc(points, func(p point) bool { return p.n >= total*9/10 })
		if lo >= 0 && hi > lo {
			res.RefreshesPerS = (points[hi].n - points[lo].n) / (points[hi].at - points[lo].at).Seconds()
		} else if res.ElapsedS > 0 {
			res.RefreshesPerS = total / res.ElapsedS
		}
	}
	for _, name := range []string{"tokenbroker_refresh_failures_total", "tokenbroker_refresh_lost_total"} {
		v, err := scrapeAll(ctx, replicas, name)
		if err != nil {
			return nil, err
		}
		res.Errors += v
	}
	failed, err := scrapeAll(ctx, replicas, `tokenbroker_refresher_actions_total{action="failed"}`)
	if err != nil {
		return nil, err
	}
	res.Errors += failed
	for _, r := range replicas {
		if kb, err := peakRSSKB(r.Pid()); err == nil {
			res.RSSMB = max(res.RSSMB, float64(kb)/1024)
		}
		if cpu, err := cpuSeconds(r.Pid()); err == nil {
			res.ReplicaCPUS += cpu
		}
	}
	// Stop the replicas (their flights end first), then compare what
	// the provider received with what the database holds: refreshes are
	// the generations committed (each seeded link starts at 1), exact
	// even when the run ends with refreshes in flight.
	for _, r := range replicas {
		if err := r.Stop(); err != nil {
			return nil, err
		}
	}
	replicas = nil
	res.ProviderRefreshCalls = idp.Stats().RefreshCalls - before.RefreshCalls
	if res.Refreshes, err = committedRefreshes(ctx, st); err != nil {
		return nil, err
	}
	if res.Refreshes > 0 {
		res.CPUMSPerRefresh = res.ReplicaCPUS * 1000 / float64(res.Refreshes)
	}
	res.ScanMS = summarize(scans)
	res.ScanP99MS = res.ScanMS.P99
	if res.DBSizeMB, err = dbSizeMB(ctx, st, dataDir); err != nil {
		return nil, err
	}
	return res, nil
}

// seedBatch is how many links one seeding transaction (SQLite) or COPY
// (PostgreSQL) writes.
const seedBatch = 5000

// seedFleet puts n links into the store st, each with a fresh token family
// at idp, expiring from first to first+window. Each link is sealed by the
// sealing store (crypt.Store over a capturing inner store, so the rows hold
// exactly what PutLink would write) and written in batches: SQLite in one
// transaction per batch, PostgreSQL by COPY. One PutLink per link is a
// transaction and an outbox event each (about 1,700 links/s on SQLite
// here, ten minutes for a million links), and the replicas would then
// route a million link.connected events while being measured.
func seedFleet(ctx context.Context, st fleetStore, ring *crypt.Ring, idp *fakeidp.Server, n int, first time.Time, window time.Duration, logf func(string, ...any)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []*tokenbroker.Link, 2)
	sealErr := make(chan error, 1)
	go func() {
		defer close(batches)
		c := &capture{}
		seal := crypt.NewStore(c, ring)
		batch := make([]*tokenbroker.Link, 0, seedBatch)
		for i := range n {
			user := "fleet-" + strconv.Itoa(i)
			// One fakeidp user holds every link's token family: it finds
			// its users by a linear search, which a million of them would
			// make the benchmark's cost.
			tok, err := idp.IssueToken("fleet")
			if err != nil {
				sealErr <- err
				return
			}
			expiry := first.Add(time.Duration(int64(window) * int64(i) / int64(n))).Truncate(time.Millisecond)
			if _, err := seal.PutLink(ctx, &tokenbroker.Link{UserID: user, ProviderID: "bench",
				Token: tokenbroker.Token{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: "Bearer",
					Expiry: expiry, IssuedAt: expiry.Add(-time.Hour)}}, tokenbroker.Record{}); err != nil {
				sealErr <- err
				return
			}
			batch = append(batch, c.last)
			if len(batch) == seedBatch || i == n-1 {
				select {
				case batches <- batch:
				case <-ctx.Done():
					return
				}
				batch = make([]*tokenbroker.Link, 0, seedBatch)
			}
		}
	}()
	insert, closeInsert, err := bulkInserter(ctx, st)
	if err != nil {
		return err
	}
	defer closeInsert()
	done, lastLog := 0, time.Now()
	for b := range batches {
		if err := insert(ctx, b); err != nil {
			return err
		}
		done += len(b)
		if time.Since(lastLog) > 10*time.Second {
			logf("seeded %d of %d links", done, n)
			lastLog = time.Now()
		}
	}
	select {
	case err := <-sealErr:
		return err
	default:
	}
	if done != n {
		return fmt.Errorf("seeded %d of %d links", done, n)
	}
	return ctx.Err()
}

// capture is the sealing store's inner store while seeding: it keeps the
// sealed link PutLink is given instead of writing it. Nothing else of it
// is called.
type capture struct {
	tokenbroker.Store
	last *tokenbroker.Link
}

func (c *capture) PutLink(_ context.Context, l *tokenbroker.Link, _ tokenbroker.Record) (*tokenbroker.Link, error) {
	c.last = l
	out := *l
	return &out, nil
}

// seedColumns are the columns a seeded link sets; the others keep their
// defaults (generation 1, active, no lease).
var seedColumns = []string{"user_id", "provider_id", "access_token", "token_type", "refresh_token",
	"expiry", "issued_at", "key_id", "created_at", "updated_at", "refreshed_at", "last_used_at"}

// bulkInserter returns a function that writes a batch of sealed links to
// st's database on a connection of its own.
func bulkInserter(ctx context.Context, st fleetStore) (func(context.Context, []*tokenbroker.Link) error, func(), error) {
	switch s := st.(type) {
	case *postgres.Store:
		return func(ctx context.Context, links []*tokenbroker.Link) error {
			now := time.Now()
			_, err := s.Pool().CopyFrom(ctx, pgx.Identifier{"links"}, seedColumns, pgx.CopyFromSlice(len(links), func(i int) ([]any, error) {
				l := links[i]
				return []any{l.UserID, l.ProviderID, l.Token.AccessToken, l.Token.TokenType, l.Token.RefreshToken,
					l.Token.Expiry, l.Token.IssuedAt, l.KeyID, now, now, now, now}, nil
			}))
			return err
		}, func() {}, nil
	case *sqlite.Store:
		db, err := sql.Open("sqlite", "file:"+s.Path()+"?_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_txlock=immediate")
		if err != nil {
			return nil, nil, err
		}
		db.SetMaxOpenConns(1)
		q := "INSERT INTO links (" + strings.Join(seedColumns, ", ") + ") VALUES (?" + strings.Repeat(", ?", len(seedColumns)-1) + ")"
		return func(ctx context.Context, links []*tokenbroker.Link) error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			stmt, err := tx.PrepareContext(ctx, q)
			if err != nil {
				return err
			}
			defer stmt.Close()
			now := time.Now().UnixMilli()
			for _, l := range links {
				if _, err := stmt.ExecContext(ctx, l.UserID, l.ProviderID, l.Token.AccessToken, l.Token.TokenType, l.Token.RefreshToken,
					l.Token.Expiry.UnixMilli(), l.Token.IssuedAt.UnixMilli(), l.KeyID, now, now, now, now); err != nil {
					return err
				}
			}
			return tx.Commit()
		}, func() { db.Close() }, nil
	}
	return nil, nil, fmt.Errorf("bench fleet: cannot seed a %T", st)
}

// scrapeAll sums a counter (name, or name{labels} to match one series)
// across the live replicas.
func scrapeAll(ctx context.Context, replicas []*Replica, name string) (float64, error) {
	var sum float64
	for _, r := range replicas {
		if !r.Alive() {
			continue
		}
		v, err := scrapeCounter(ctx, r.URL+"/metrics", name)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", r.Name, err)
		}
		sum += v
	}
	return sum, nil
}

// peakRSSKB reads a process's peak resident set size (VmHWM) in KiB.
func peakRSSKB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmHWM")
}

// committedRefreshes counts the refreshes the database holds: every
// seeded link starts at generation 1 and a refresh adds one.
func committedRefreshes(ctx context.Context, st fleetStore) (int64, error) {
	const q = `SELECT COALESCE(SUM(generation - 1), 0) FROM links`
	var n int64
	switch s := st.(type) {
	case *postgres.Store:
		return n, s.Pool().QueryRow(ctx, q).Scan(&n)
	case *sqlite.Store:
		db, err := sql.Open("sqlite", "file:"+s.Path()+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)")
		if err != nil {
			return 0, err
		}
		defer db.Close()
		return n, db.QueryRowContext(ctx, q).Scan(&n)
	}
	return 0, fmt.Errorf("bench fleet: cannot count the refreshes of a %T", st)
}

// cpuSeconds reads a process's CPU time so far (utime + stime).
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command, which is in parentheses: state is
	// the first, utime the 12th and stime the 13th.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, errors.New("unexpected /proc/PID/stat")
	}
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += n
	}
	return float64(ticks) / 100, nil // USER_HZ is 100 on Linux
}

// dbSizeMB is the database's size: SQLite's file and its WAL, or
// PostgreSQL's pg_database_size.
func dbSizeMB(ctx context.Context, st fleetStore, dataDir string) (float64, error) {
	if pg, ok := st.(*postgres.Store); ok {
		var n int64
		if err := pg.Pool().QueryRow(ctx, `SELECT pg_database_size(current_database())`).Scan(&n); err != nil {
			return 0, err
		}
		return float64(n) / (1 << 20), nil
	}
	var n int64
	for _, f := range []string{"tokenbroker.db", "tokenbroker.db-wal"} {
		if fi, err := os.Stat(filepath.Join(dataDir, f)); err == nil {
			n += fi.Size()
		}
	}
	return float64(n) / (1 << 20), nil
}
