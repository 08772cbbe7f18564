package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/client"
	"github.com/tokenbroker/tokenbroker/crypt"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/bench"
	"github.com/tokenbroker/tokenbroker/internal/idptest"
	"github.com/tokenbroker/tokenbroker/internal/pgtest"
)

// multiProcess begins a test of real serve processes on the shared
// throwaway PostgreSQL: skipped with -short, it needs PostgreSQL's
// binaries and runs in parallel with the other such tests.
func multiProcess(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process test")
	}
	pgtest.RequireBinaries(t)
	t.Parallel()
}

// cluster is what the multi-process tests' serve replicas share: one
// fakeidp, one database (PostgreSQL, or SQLite in the data dir), one data
// key, and the admin API key that `setup` made.
type cluster struct {
	idp    *fakeidp.Server
	dbURL  string
	dir    string   // the test's directory; the data dir is dir/data
	exe    string   // this test binary, which runs main (see childEnv)
	env    []string // every replica's environment
	args   []string // every replica's serve flags
	key    string   // the data encryption key
	apiKey string
}

// newCluster starts fakeidp with idpCfg and runs setup on dbURL (""
// for SQLite in the data dir). Its
// replicas run with env on top of bench.ReplicaEnv (which turns the
// background refresher off) and serve's flags args.
func newCluster(t *testing.T, idpCfg fakeidp.Config, dbURL string, env []string, args ...string) *cluster {
	t.Helper()
	c := &cluster{dbURL: dbURL, dir: t.TempDir(), args: args}
	var err error
	if c.exe, err = os.Executable(); err != nil {
		t.Fatal(err)
	}
	c.idp = idptest.MustStart(t, idpCfg)
	if c.key, err = crypt.GenerateKey(nil); err != nil {
		t.Fatal(err)
	}
	c.env = childEnv(append(bench.ReplicaEnv(c.idp, c.key, dbURL, filepath.Join(c.dir, "data")), env...)...)
	if c.apiKey, err = bench.Setup(context.Background(), c.exe, c.env); err != nil {
		t.Fatal(err)
	}
	return c
}

// startReplica starts a serve replica named name, with extraEnv on top of
// the cluster's environment. When t ends it is stopped and its log is
// searched for secrets (and shown if t failed).
func (c *cluster) startReplica(t *testing.T, name string, extraEnv ...string) *bench.Replica {
	t.Helper()
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--replica-id", name}, c.args...)
	r, err := bench.StartReplica(context.Background(), name, c.exe, args, slices.Concat(c.env, extraEnv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = r.Stop()
		assertNoSecretsLogged(t, r.Logs())
		if t.Failed() {
			t.Logf("%s log:\n%s", name, r.Logs())
		}
	})
	return r
}

// replicaSet is n replicas of a cluster, named r0 to rn-1, each with a
// client. Replicas can be killed and started again under their name.
type replicaSet struct {
	*cluster

	mu       sync.Mutex
	replicas []*bench.Replica
	clients  []*client.Client
}

// startReplicaSet starts n replicas of newCluster(t, idpCfg, dbURL, env,
// args...).
func startReplicaSet(t *testing.T, n int, idpCfg fakeidp.Config, dbURL string, env []string, args ...string) *replicaSet {
	t.Helper()
	rs := &replicaSet{cluster: newCluster(t, idpCfg, dbURL, env, args...),
		replicas: make([]*bench.Replica, n), clients: make([]*client.Client, n)}
	for i := range n {
		rs.start(t, i)
	}
	return rs
}

// start starts replica i (again), named ri.
func (rs *replicaSet) start(t *testing.T, i int) {
	t.Helper()
	r := rs.startReplica(t, fmt.Sprintf("r%d", i))
	rs.mu.Lock()
	rs.replicas[i], rs.clients[i] = r, client.New(r.URL, rs.apiKey)
	rs.mu.Unlock()
}

// client returns a client of replica i as it runs now.
func (rs *replicaSet) client(i int) *client.Client {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.clients[i]
}

// waitOutboxEmpty waits until st's outbox holds no pending delivery and
// no dead letter, or fails t when ctx ends. It polls: a delivery's
// completion has no event of its own.
func waitOutboxEmpty(ctx context.Context, t *testing.T, st tokenbroker.OutboxStore) {
	t.Helper()
	for {
		s, err := st.OutboxStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.Pending == 0 && s.Dead == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the outbox did not empty: %+v", s)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
