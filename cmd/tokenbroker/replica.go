package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// replica is a `tokenbroker serve` child process, started by the herd
// benchmark and the multi-replica tests.
type replica struct {
	Name string
	URL  string // http://127.0.0.1:PORT
	cmd  *exec.Cmd
	done chan struct{}
	err  error

	mu  sync.Mutex
	log strings.Builder // stderr, for diagnostics and log assertions
}

// listeningPrefix starts the line serve prints on stdout once it listens.
const listeningPrefix = "tokenbroker listening on "

// startReplica starts exe with args and env and waits until it prints the
// URL it listens on. The child dies with the parent (Pdeathsig), so no
// process outlives a killed benchmark or test binary.
func startReplica(ctx context.Context, name, exe string, args, env []string) (*replica, error) {
	cmd := exec.Command(exe, args...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	r := &replica{Name: name, cmd: cmd, done: make(chan struct{})}
	cmd.Stderr = &lockedWriter{mu: &r.mu, w: &r.log}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if !sent && strings.HasPrefix(line, listeningPrefix) {
				urlc <- strings.TrimSpace(strings.TrimPrefix(line, listeningPrefix))
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
func (r *replica) Logs() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.String()
}

// Kill sends SIGKILL and waits for the process to end.
func (r *replica) Kill() {
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
}

// Stop sends SIGTERM, waits up to 10s for a graceful exit, then kills.
func (r *replica) Stop() error {
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
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// selfExe is the executable that replicas run: this binary, or the test
// binary in tests (see main_test.go).
var selfExe = func() (string, error) { return os.Executable() }

// selfEnv is the environment replicas get on top of extra: in tests it
// adds the variable that makes the test binary act as tokenbroker.
var selfEnv = func(extra ...string) []string { return append(os.Environ(), extra...) }
