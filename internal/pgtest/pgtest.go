package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/pgcluster"
)

// Cluster is a running throwaway cluster (see internal/pgcluster).
type Cluster = pgcluster.Cluster

// InstallHint says how to get the server binaries.
const InstallHint = pgcluster.InstallHint

// BinEnv names the variable that picks the server binaries' directory.
const BinEnv = pgcluster.BinEnv

// FindBinaries returns the directory holding initdb and postgres, or
// [pgcluster.ErrNotInstalled].
func FindBinaries() (string, error) { return pgcluster.FindBinaries() }

// shared is the test binary's cluster.
var shared struct {
	mu      sync.Mutex
	started bool
	c       *Cluster
	err     error
	stopSig chan struct{}
	sigDone chan struct{}
}

// Shared returns the test binary's cluster, starting it on first use.
func Shared() (*Cluster, error) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.started {
		return shared.c, shared.err
	}
	shared.started = true
	shared.c, shared.err = pgcluster.StartCluster(context.Background())
	if shared.err == nil {
		// SIGINT/SIGTERM: stop the cluster, then die as asked.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		shared.stopSig, shared.sigDone = make(chan struct{}), make(chan struct{})
		go func(c *Cluster, stop, done chan struct{}) {
			defer close(done)
			defer signal.Stop(sig)
			select {
			case s := <-sig:
				c.Stop()
				fmt.Fprintf(os.Stderr, "pgtest: %v: stopped PostgreSQL\n", s)
				os.Exit(130)
			case <-stop:
			}
		}(shared.c, shared.stopSig, shared.sigDone)
	}
	return shared.c, shared.err
}

// stopShared stops the test binary's cluster, if started.
func stopShared() error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.c == nil {
		return nil
	}
	close(shared.stopSig)
	<-shared.sigDone
	err := shared.c.Stop()
	shared.c, shared.started = nil, false
	return err
}

// Required reports whether missing PostgreSQL binaries must fail tests
// rather than skip them: CI=true or TOKENBROKER_REQUIRE_POSTGRES=1.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("TOKENBROKER_REQUIRE_POSTGRES") == "1"
}

// NewDatabase returns the URL of a fresh, empty database in the test
// binary's shared cluster, dropped at cleanup. Without PostgreSQL binaries
// it skips the test (fails it under [Required]).
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	c := SharedCluster(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url, err := c.CreateDatabase(ctx)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.DropDatabase(ctx, url); err != nil {
			tb.Errorf("%v", err)
		}
	})
	return url
}

// SharedCluster returns the test binary's cluster for tests that need more
// than a database (terminating sessions), skipping like [NewDatabase].
func SharedCluster(tb testing.TB) *Cluster {
	tb.Helper()
	c, err := Shared()
	if errors.Is(err, pgcluster.ErrNotInstalled) {
		missing(tb, err)
	}
	if err != nil {
		tb.Fatalf("%v", err)
	}
	return c
}

// RequireBinaries skips tb, like [NewDatabase], where no PostgreSQL server
// binaries are installed (fails it under [Required]), for tests that start
// their own clusters or processes.
func RequireBinaries(tb testing.TB) {
	tb.Helper()
	if _, err := FindBinaries(); err != nil {
		missing(tb, err)
	}
}

// missing skips tb with one line saying what to install, or fails it
// under [Required].
func missing(tb testing.TB, err error) {
	tb.Helper()
	if Required() {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Skipf("pgtest: PostgreSQL not installed; install it with: %s", InstallHint)
}

// Main runs the tests, stops the shared cluster (if a test started it) and
// removes its directory, then, if the tests passed, runs each after
// function (for example a goroutine-leak check), and returns the exit
// code for os.Exit.
func Main(m *testing.M, after ...func() error) int {
	code := m.Run()
	if err := stopShared(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: stop: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	if code == 0 {
		for _, f := range after {
			if err := f(); err != nil {
				fmt.Fprintf(os.Stderr, "%v\n", err)
				code = 1
			}
		}
	}
	return code
}
