package pgcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// InstallHint says how to get the server binaries.
const InstallHint = "apt-get install -y postgresql"

// ErrNotInstalled is returned by [StartCluster] when no PostgreSQL server
// binaries are found.
var ErrNotInstalled = errors.New("PostgreSQL server binaries (initdb, postgres) not found; install them with: " + InstallHint)

// Cluster is a running throwaway PostgreSQL cluster.
type Cluster struct {
	dir  string
	port int
	bin  string
	cred *syscall.Credential
	cmd  *exec.Cmd
	// exited is closed when the postmaster has exited.
	exited  chan struct{}
	waitErr error
	// release lets the goroutine that pins the postmaster's parent
	// thread return.
	release chan struct{}
	admin   *pgxpool.Pool

	stopOnce sync.Once
	stopErr  error
}

// BinEnv names an environment variable that, when set, is the only
// directory searched for initdb and postgres (to pick a version).
const BinEnv = "TOKENBROKER_PG_BIN"

// FindBinaries returns the directory holding initdb and postgres: $BinEnv
// if set, else the one of initdb on PATH, else the newest
// /usr/lib/postgresql/*/bin.
func FindBinaries() (string, error) {
	if d := os.Getenv(BinEnv); d != "" {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
		return "", ErrNotInstalled
	}
	var dirs []string
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dirs = append(dirs, filepath.Dir(p))
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	slices.SortFunc(matches, func(a, b string) int { return versionOf(b) - versionOf(a) })
	for _, m := range matches {
		dirs = append(dirs, filepath.Dir(m))
	}
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", ErrNotInstalled
}

func versionOf(initdb string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return v
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// StartCluster creates and starts a cluster. Stop it with [Cluster.Stop].
func StartCluster(ctx context.Context) (*Cluster, error) {
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	base := os.TempDir()
	if cred != nil {
		base = "/tmp" // TMPDIR may be a directory the postgres user cannot reach
	}
	removeStale(base)
	dir, err := os.MkdirTemp(base, dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	c := &Cluster{dir: dir, bin: bin, cred: cred}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("pgcluster: %w", err)
		}
	}

	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", filepath.Join(dir, "data"), "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions")
	initdb.Dir = dir
	initdb.Env = childEnv()
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgcluster: initdb: %v: %s", err, lastLines(string(out), 5))
	}

	// The port is free when chosen but may be taken before the postmaster
	// binds it: try a few.
	for attempt := 0; ; attempt++ {
		err = c.start(ctx, bin, cred)
		if err == nil {
			break
		}
		if attempt == 4 || !strings.Contains(err.Error(), "could not bind") && !strings.Contains(err.Error(), "could not create") {
			return nil, err
		}
	}
	ok = true
	return c, nil
}

// dirPrefix names cluster directories.
const dirPrefix = "tokenbroker-pgtest-"

// removeStale removes the directories of clusters whose test binary was
// killed (SIGKILL leaves no chance to clean up; the parent-death signal
// has already stopped their postmaster): a postmaster.pid naming a dead
// process, or no postmaster.pid and older than ten minutes.
func removeStale(base string) {
	dirs, _ := filepath.Glob(filepath.Join(base, dirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "data", "postmaster.pid"))
		if err != nil {
			if fi, err := os.Stat(d); err == nil && time.Since(fi.ModTime()) > 10*time.Minute {
				os.RemoveAll(d)
			}
			continue
		}
		first, _, _ := strings.Cut(string(b), "\n")
		pid, err := strconv.Atoi(strings.TrimSpace(first))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

// credential returns the postgres user's credentials when running as
// root, nil otherwise.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgcluster: running as root needs the unprivileged user \"postgres\" (PostgreSQL refuses root): %w", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

func childEnv() []string {
	return []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "LANG=C"}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs the postmaster and waits until it accepts connections.
func (c *Cluster) start(ctx context.Context, bin string, cred *syscall.Credential) error {
	port, err := freePort()
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	return c.startOn(ctx, bin, cred, port, os.O_TRUNC)
}

// startOn runs the postmaster on port; logMode is os.O_TRUNC for a new
// cluster, os.O_APPEND for a restart.
func (c *Cluster) startOn(ctx context.Context, bin string, cred *syscall.Credential, port, logMode int) error {
	logPath := filepath.Join(c.dir, "postgres.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|logMode, 0o600)
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(filepath.Join(bin, "postgres"),
		"-D", filepath.Join(c.dir, "data"),
		"-p", strconv.Itoa(port),
		"-k", c.dir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=300",
		"-c", "shared_buffers=32MB",
		"-c", "log_min_messages=warning",
		"-c", "log_min_error_statement=panic",
	)
	cmd.Dir = c.dir
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	// Setpgid keeps a terminal's Ctrl-C for us (we stop the cluster);
	// Pdeathsig kills the postmaster if this process dies first. The
	// parent-death signal fires when the creating *thread* exits, so the
	// postmaster is started from a goroutine locked to its thread that
	// stays until the cluster stops.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL, Setpgid: true}

	started := make(chan error, 1)
	release := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			runtime.UnlockOSThread()
			return
		}
		started <- nil
		waitErr := cmd.Wait()
		c.waitErr = waitErr
		close(exited)
		<-release
		runtime.UnlockOSThread()
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("pgcluster: start postgres: %w", err)
	}
	c.cmd, c.port, c.exited, c.release = cmd, port, exited, release

	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(cctx, c.URL())
		cancel()
		if err == nil {
			conn.Close(context.Background())
			break
		}
		select {
		case <-exited:
			close(release)
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("pgcluster: postgres exited: %v: %s", c.waitErr, lastLines(string(log), 5))
		case <-deadline.C:
			c.kill()
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("pgcluster: postgres did not accept connections within 30s: %s", lastLines(string(log), 5))
		case <-ctx.Done():
			c.kill()
			return ctx.Err()
		case <-tick.C:
		}
	}
	cfg, err := pgxpool.ParseConfig(c.URL())
	if err != nil {
		c.kill()
		return err
	}
	cfg.MaxConns = 4
	c.admin, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		c.kill()
		return err
	}
	return nil
}

// kill stops the postmaster at once and waits for it.
func (c *Cluster) kill() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
	close(c.release)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// Dir returns the cluster's directory (data, log and unix socket).
func (c *Cluster) Dir() string { return c.dir }

// Port returns the cluster's TCP port on 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// URL returns the URL of the cluster's "postgres" database, as the
// superuser "postgres" (trust authentication, loopback only).
func (c *Cluster) URL() string { return c.urlFor("postgres") }

func (c *Cluster) urlFor(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// CreateDatabase creates a fresh, empty database and returns its URL.
func (c *Cluster) CreateDatabase(ctx context.Context) (string, error) {
	var b [8]byte
	rand.Read(b[:])
	name := "tb_" + hex.EncodeToString(b[:])
	if _, err := c.admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("pgcluster: create database: %w", err)
	}
	return c.urlFor(name), nil
}

// DropDatabase drops the database of url (created by
// [Cluster.CreateDatabase]), ending its remaining sessions.
func (c *Cluster) DropDatabase(ctx context.Context, url string) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return err
	}
	name := pgx.Identifier{cfg.Database}.Sanitize()
	if _, err := c.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("pgcluster: drop database: %w", err)
	}
	return nil
}

// Terminate ends the sessions of the database of url whose
// application_name is app (every session if app is ""), and reports how
// many: a way to test reconnection.
func (c *Cluster) Terminate(ctx context.Context, url, app string) (int, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return 0, err
	}
	var n int
	err = c.admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid() AND ($2 = '' OR application_name = $2)`,
		cfg.Database, app).Scan(&n)
	return n, err
}

// Halt shuts the postmaster down (fast shutdown: connections are closed)
// and keeps the cluster's data, so that [Cluster.Resume] can start it again
// on the same port: a database outage for the clients of its URLs.
func (c *Cluster) Halt() {
	if c.admin != nil {
		c.admin.Close()
		c.admin = nil
	}
	c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.exited:
	case <-time.After(15 * time.Second):
		c.cmd.Process.Signal(syscall.SIGKILL)
		<-c.exited
	}
	close(c.release)
}

// Resume starts a halted cluster again on its port and waits until it
// accepts connections.
func (c *Cluster) Resume(ctx context.Context) error {
	return c.startOn(ctx, c.bin, c.cred, c.port, os.O_APPEND)
}

// Stop shuts the cluster down (fast shutdown, then SIGKILL after 15 s) and
// removes its directory. It is safe to call more than once, and after
// [Cluster.Halt].
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		select {
		case <-c.exited:
			// Halted: nothing runs.
		default:
			c.Halt()
		}
		c.stopErr = os.RemoveAll(c.dir)
	})
	return c.stopErr
}
