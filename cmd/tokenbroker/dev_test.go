package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/client"
)

// TestDev runs `tokenbroker dev` as a newcomer would and follows what it
// prints: the admin key works, the demo provider is configured, the
// connect page lists it, and the data directory holds the database.
func TestDev(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TOKENBROKER_ENCRYPTION_KEYS", "")
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--addr", "127.0.0.1:0", "--data-dir", dir}, pw, io.Discard)
		pw.Close()
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("dev exited with %d", code)
		}
	}()
	var out strings.Builder
	sc := bufio.NewScanner(pr)
	keyRe := regexp.MustCompile(`^\s+(tbk_\S+)$`)
	connectRe := regexp.MustCompile(`^\s+(http://\S+/connect/\S+)$`)
	var key, connectURL, base string
	deadline := time.AfterFunc(30*time.Second, func() { pw.CloseWithError(io.ErrUnexpectedEOF) })
	defer deadline.Stop()
	for sc.Scan() && (key == "" || connectURL == "") {
		line := sc.Text()
		out.WriteString(line + "\n")
		if m := keyRe.FindStringSubmatch(line); m != nil {
			key = m[1]
		}
		if m := connectRe.FindStringSubmatch(line); m != nil {
			connectURL = m[1]
		}
		if strings.HasPrefix(line, listeningPrefix) {
			base = strings.TrimPrefix(line, listeningPrefix)
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if key == "" || connectURL == "" || base == "" {
		t.Fatalf("dev did not print a key, a connect URL and its address:\n%s", out.String())
	}
	c := client.New(base, key)
	ps, err := c.Providers(ctx)
	if err != nil || len(ps) != 1 || ps[0].ID != "demo" {
		t.Fatalf("providers: %+v %v", ps, err)
	}
	resp, err := http.Get(connectURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Demo provider") {
		t.Fatalf("connect page: %d\n%s", resp.StatusCode, body)
	}
}
