package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	tokenbroker "github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/testdb"
	"github.com/tokenbroker/tokenbroker/store/sqlite"
	"github.com/tokenbroker/tokenbroker/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	storetest.RunConformance(t, func(t *testing.T) tokenbroker.Store { return testdb.SQLite(t) })
}

func TestOpenCreatesDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "tokenbroker.db")
	s := testdb.SQLiteAt(t, path)
	if s.Path() != path {
		t.Fatalf("Path = %q, want %q", s.Path(), path)
	}
	for _, p := range []string{path, filepath.Dir(path)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s has mode %v; want no access for group and others", p, perm)
		}
	}
	cur, latest, err := s.SchemaVersion(context.Background())
	if err != nil || cur != latest || latest != sqlite.LatestVersion() {
		t.Fatalf("SchemaVersion = %d, %d, %v", cur, latest, err)
	}
}

func TestOpenDoesNotMigrate(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cur, latest, err := s.SchemaVersion(ctx)
	if err != nil || cur != 0 || latest < 1 {
		t.Fatalf("SchemaVersion before Migrate = %d, %d, %v; want 0, latest", cur, latest, err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
}

func TestOpenRejectsNewerSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "x.db")
	s := testdb.SQLiteAt(t, path)
	future := sqlite.LatestVersion() + 7
	if err := s.ForceSchemaVersion(ctx, future); err != nil {
		t.Fatal(err)
	}
	_, err := sqlite.Open(ctx, path)
	var tooNew *tokenbroker.SchemaTooNewError
	if !errors.As(err, &tooNew) || tooNew.Current != future || tooNew.Latest != sqlite.LatestVersion() {
		t.Fatalf("Open = %v, want SchemaTooNewError{%d, %d}", err, future, sqlite.LatestVersion())
	}
	want := fmt.Sprintf("database schema version %d is newer than this binary supports (%d); upgrade tokenbroker", future, sqlite.LatestVersion())
	if err.Error() != want {
		t.Fatalf("error = %q, want %q", err, want)
	}
}

// TestTwoStoresOneFile races writers of two Store values (two processes'
// worth of write connections) on one file: WAL plus busy_timeout must keep
// SQLITE_BUSY from the callers, and the lease still has one winner.
func TestTwoStoresOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	a := testdb.SQLiteAt(t, path)
	b := testdb.SQLiteAt(t, path)
	ctx := context.Background()
	l := storetest.MustPutLink(t, a, storetest.NewLink("alice", "github", time.Now().Add(time.Hour)))
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	start := make(chan struct{})
	for i := range 32 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			<-start
			g, err := s.AcquireLease(ctx, tokenbroker.LeaseRequest{LinkID: l.ID, Generation: l.Generation, Owner: fmt.Sprint(i), TTL: time.Minute})
			if err != nil {
				t.Errorf("AcquireLease: %v", err)
				return
			}
			ok := g.Won
			// Interleave other writes and reads.
			if _, err := s.ListLinks(ctx, "alice"); err != nil {
				t.Errorf("ListLinks: %v", err)
			}
			if err := s.AppendAudit(ctx, []tokenbroker.AuditEvent{{Action: "x"}}); err != nil {
				t.Errorf("AppendAudit: %v", err)
			}
			mu.Lock()
			if ok {
				wins++
			}
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d winners, want 1", wins)
	}
}

func TestOpenEmptyPath(t *testing.T) {
	_, err := sqlite.Open(context.Background(), "")
	if tokenbroker.ErrorCode(err) != tokenbroker.EINVALID {
		t.Fatalf("Open(\"\") = %v, want EINVALID", err)
	}
}

// TestMigrateAppliesAMissingLowerVersion: migration numbers land in any
// order, so a database can have 00005 applied and 00003 missing. Its
// schema version is then below the binary's latest (so /readyz is not
// ready), and Migrate applies the missing one.
func TestMigrateAppliesAMissingLowerVersion(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.RunMigrateMissingLowerVersion(t, s)
}
