package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/pgcluster"
)

// Replica is a `tokenbroker serve` (or `tokenbroker bench replica`) child
// process, started by the herd benchmark and the multi-replica tests.
type Replica struct {
	Name string
	URL  string // http://127.0.0.1:PORT
	cmd  *exec.Cmd
	done chan struct{}
	err  error

	mu      sync.Mutex
	log     strings.Builder // stderr, for diagnostics and log assertions
	written chan struct{}   // receives (coalesced) after each write to log
}

// ListeningPrefix starts the line `tokenbroker serve` prints on stdout once
// it listens, followed by its URL.
const ListeningPrefix = "tokenbroker listening on "

// StartReplica starts exe with args and env and waits until it prints the
// URL it listens on. The child dies with the parent (Pdeathsig), so no
// process outlives a killed benchmark or test binary.
func StartReplica(ctx context.Context, name, exe string, args, env []string) (*Replica, error) {
	cmd := exec.Command(exe, args...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	r := &Replica{Name: name, cmd: cmd, done: make(chan struct{}), written: make(chan struct{}, 1)}
	cmd.Stderr = &lockedWriter{mu: &r.mu, w: &r.log, written: r.written}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if !sent && strings.HasPrefix(line, ListeningPrefix) {
				urlc <- strings.TrimSpace(strings.TrimPrefix(line, ListeningPrefix))
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		r.err = cmd.Wait()
		close(r.done)
	}()
	t := time.NewTimer(60 * time.Second)
	defer t.Stop()
	select {
	case u := <-urlc:
		r.URL = u
		return r, nil
	case <-r.done:
		return nil, fmt.Errorf("%s exited before listening: %v\n%s", name, r.err, r.Logs())
	case <-t.C:
		r.Kill()
		return nil, fmt.Errorf("%s did not start listening within 60s\n%s", name, r.Logs())
	case <-ctx.Done():
		r.Kill()
		return nil, ctx.Err()
	}
}

// Logs returns what the replica wrote to stderr so far.
func (r *Replica) Logs() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.String()
}

// WaitLog waits until the replica's stderr holds s, the process ends, or
// ctx is done. It is woken by each write, not by polling.
func (r *Replica) WaitLog(ctx context.Context, s string) error {
	for {
		if strings.Contains(r.Logs(), s) {
			return nil
		}
		select {
		case <-r.written:
		case <-r.done:
			if strings.Contains(r.Logs(), s) {
				return nil
			}
			return fmt.Errorf("%s exited before logging %q", r.Name, s)
		case <-ctx.Done():
			return fmt.Errorf("%s did not log %q: %w", r.Name, s, ctx.Err())
		}
	}
}

// Alive reports whether the process has not ended.
func (r *Replica) Alive() bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL and waits for the process to end.
func (r *Replica) Kill() {
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
}

// Stop sends SIGTERM, waits up to 10s for a graceful exit, then kills.
func (r *Replica) Stop() error {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-r.done:
	case <-t.C:
		r.Kill()
		return fmt.Errorf("%s did not stop within 10s; killed", r.Name)
	}
	var ee *exec.ExitError
	if r.err != nil && !errors.As(r.err, &ee) {
		return r.err
	}
	return nil
}

type lockedWriter struct {
	mu      *sync.Mutex
	w       io.Writer
	written chan struct{}
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	n, err := l.w.Write(p)
	l.mu.Unlock()
	select {
	case l.written <- struct{}{}:
	default: // a wake-up is already pending
	}
	return n, err
}

// Command prepares a child tokenbroker command (exe with env) that dies
// with its parent.
func Command(ctx context.Context, exe string, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Pid returns the process id.
func (r *Replica) Pid() int { return r.cmd.Process.Pid }

// resolveStore returns the store a run of replicas uses: "auto" (or
// empty) is SQLite for one replica and PostgreSQL for more, and SQLite
// serves only one.
func resolveStore(store string, replicas int) (string, error) {
	if store == "auto" || store == "" {
		store = "sqlite"
		if replicas > 1 {
			store = "postgres"
		}
	}
	switch {
	case store != "sqlite" && store != "postgres":
		return "", fmt.Errorf("unknown --store %q", store)
	case store == "sqlite" && replicas > 1:
		return "", errors.New("SQLite serves one replica; use --store postgres for more")
	}
	return store, nil
}

// throwawayDatabase starts a throwaway PostgreSQL cluster and creates a
// database on it; stop stops the cluster and removes it. instead says, in
// the error, what to run without PostgreSQL.
func throwawayDatabase(ctx context.Context, instead string) (url string, stop func() error, err error) {
	cluster, err := pgcluster.StartCluster(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("throwaway PostgreSQL (or %s): %w", instead, err)
	}
	if url, err = cluster.CreateDatabase(ctx); err != nil {
		cluster.Stop()
		return "", nil, err
	}
	return url, cluster.Stop, nil
}
