package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/crypt"
	"github.com/tokenbroker/tokenbroker/internal/testdb"
)

func TestLoadOrCreateDevKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	r1, created, err := loadOrCreateDevKey(dir)
	if err != nil || !created {
		t.Fatalf("first LoadOrCreateDevKey = created %v, %v; want created", created, err)
	}
	fi, err := os.Stat(devKeyPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode = %v, want 0700", di.Mode().Perm())
	}
	r2, created, err := loadOrCreateDevKey(dir)
	if err != nil || created {
		t.Fatalf("second LoadOrCreateDevKey = created %v, %v; want loaded", created, err)
	}
	if r1.PrimaryID() != r2.PrimaryID() {
		t.Errorf("second load has key %s, want %s", r2.PrimaryID(), r1.PrimaryID())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data dir holds %d entries, want only the key file (temporary file left behind?)", len(entries))
	}
}

func TestLoadOrCreateDevRing(t *testing.T) {
	ctx := context.Background()
	inner := testdb.SQLite(t)
	dir := t.TempDir()
	ring, created, err := loadOrCreateDevRing(ctx, inner, dir)
	if err != nil || !created {
		t.Fatalf("empty database: created %v, %v; want a new key", created, err)
	}
	if _, err := crypt.NewStore(inner, ring).PutLink(ctx, &tokenbroker.Link{UserID: "alice", ProviderID: "github",
		Token: tokenbroker.Token{AccessToken: "a", RefreshToken: "r"}}, tokenbroker.Record{}); err != nil {
		t.Fatal(err)
	}
	again, created, err := loadOrCreateDevRing(ctx, inner, dir)
	if err != nil || created || again.PrimaryID() != ring.PrimaryID() {
		t.Fatalf("second start: %v, created %v, %v; want the same key", again, created, err)
	}
	// The key file is lost: refuse, and create nothing.
	other := t.TempDir()
	_, _, err = loadOrCreateDevRing(ctx, inner, other)
	if err == nil || !strings.Contains(err.Error(), ring.PrimaryID()) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("lost key file: %v; want a refusal naming key %s", err, ring.PrimaryID())
	}
	if _, err := os.Stat(devKeyPath(other)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a key file was created despite the refusal: %v", err)
	}
}
