package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/client"
	"github.com/tokenbroker/tokenbroker/store/sqlite"
)

// devRun is a running `tokenbroker dev` and what it printed.
type devRun struct {
	key, connectURL, base, out string
	stop                       func(t *testing.T)
}

// startDev runs `tokenbroker dev` on dir in process and reads what it
// prints until it has shown a key, a connect URL and its address.
func startDev(t *testing.T, dir string) *devRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--addr", "127.0.0.1:0", "--data-dir", dir}, pw, io.Discard)
		pw.Close()
	}()
	d := &devRun{stop: func(t *testing.T) {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("dev exited with %d", code)
		}
	}}
	var out strings.Builder
	sc := bufio.NewScanner(pr)
	keyRe := regexp.MustCompile(`^\s+(tbk_\S+)$`)
	connectRe := regexp.MustCompile(`^\s+(http://\S+/connect/\S+)$`)
	deadline := time.AfterFunc(30*time.Second, func() { pw.CloseWithError(io.ErrUnexpectedEOF) })
	defer deadline.Stop()
	for sc.Scan() && (d.key == "" || d.connectURL == "") {
		line := sc.Text()
		out.WriteString(line + "\n")
		if m := keyRe.FindStringSubmatch(line); m != nil {
			d.key = m[1]
		}
		if m := connectRe.FindStringSubmatch(line); m != nil {
			d.connectURL = m[1]
		}
		if strings.HasPrefix(line, listeningPrefix) {
			d.base = strings.TrimPrefix(line, listeningPrefix)
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	d.out = out.String()
	if d.key == "" || d.connectURL == "" || d.base == "" {
		d.stop(t)
		t.Fatalf("dev did not print a key, a connect URL and its address:\n%s", d.out)
	}
	return d
}

// TestDev runs `tokenbroker dev` as a newcomer would and follows what it
// prints: the admin key works, the demo provider is configured, the
// connect page lists it, and the data directory holds the database.
func TestDev(t *testing.T) {
	t.Setenv("TOKENBROKER_ENCRYPTION_KEYS", "")
	d := startDev(t, t.TempDir())
	defer d.stop(t)
	ctx := context.Background()
	c := client.New(d.base, d.key)
	ps, err := c.Providers(ctx)
	if err != nil || len(ps) != 1 || ps[0].ID != "demo" {
		t.Fatalf("providers: %+v %v", ps, err)
	}
	resp, err := http.Get(d.connectURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Demo provider") {
		t.Fatalf("connect page: %d\n%s", resp.StatusCode, body)
	}
}

// TestDevTwiceOneAdminKey: dev started twice on one data directory shows
// the same admin key, and the database holds one admin key, not one per
// start.
func TestDevTwiceOneAdminKey(t *testing.T) {
	t.Setenv("TOKENBROKER_ENCRYPTION_KEYS", "")
	dir := t.TempDir()
	first := startDev(t, dir)
	first.stop(t)
	second := startDev(t, dir)
	second.stop(t)
	if second.key != first.key {
		t.Errorf("the second dev printed another key")
	}
	if !strings.Contains(second.out, "dev made before") {
		t.Errorf("the second dev does not say the key is the one it made before:\n%s", second.out)
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, sqliteFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys, err := st.ListAPIKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].Revoked() {
		t.Fatalf("%d API keys after two dev runs, want one live admin key: %+v", len(keys), keys)
	}
}
