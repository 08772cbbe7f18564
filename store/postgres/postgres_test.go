package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	tokenbroker "github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/await"
	"github.com/tokenbroker/tokenbroker/internal/pgtest"
	"github.com/tokenbroker/tokenbroker/internal/testdb"
	"github.com/tokenbroker/tokenbroker/store/postgres"
	"github.com/tokenbroker/tokenbroker/store/storetest"
)

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, func() error { return goleak.Find() }))
}

func TestConformance(t *testing.T) {
	storetest.RunConformance(t, func(t *testing.T) tokenbroker.Store { return testdb.Postgres(t) })
}

func TestOpenDoesNotMigrate(t *testing.T) {
	ctx := context.Background()
	s, err := postgres.Open(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cur, latest, err := s.SchemaVersion(ctx)
	if err != nil || cur != 0 || latest != postgres.LatestVersion() || latest < 1 {
		t.Fatalf("SchemaVersion before Migrate = %d, %d, %v", cur, latest, err)
	}
}

func TestMigrateConcurrently(t *testing.T) {
	// Replicas starting together: the advisory lock makes one migrate and
	// the others find the work done.
	url := pgtest.NewDatabase(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 4 {
		s, err := postgres.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		wg.Go(func() {
			if err := s.Migrate(ctx); err != nil {
				t.Errorf("Migrate: %v", err)
			}
		})
	}
	wg.Wait()
}

func TestMigrateWithPoolOfOne(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, pgtest.NewDatabase(t)+"&pool_max_conns=1")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate with pool_max_conns=1: %v", err)
	}
}

func TestOpenRejectsNewerSchema(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	s := testdb.PostgresAt(t, url)
	future := postgres.LatestVersion() + 3
	if err := s.ForceSchemaVersion(ctx, future); err != nil {
		t.Fatal(err)
	}
	_, err := postgres.Open(ctx, url)
	var tooNew *tokenbroker.SchemaTooNewError
	if !errors.As(err, &tooNew) || tooNew.Current != future || tooNew.Latest != postgres.LatestVersion() {
		t.Fatalf("Open = %v, want SchemaTooNewError", err)
	}
	if err := s.Migrate(ctx); !errors.As(err, &tooNew) {
		t.Fatalf("Migrate = %v, want SchemaTooNewError", err)
	}
}

func TestOpenErrorsHidePassword(t *testing.T) {
	c := pgtest.SharedCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := postgres.Open(ctx, fmt.Sprintf("postgres://postgres:s3cret@127.0.0.1:%d/nope?sslmode=disable", c.Port()))
	if err == nil || !strings.Contains(err.Error(), `database "nope" does not exist`) || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Open(missing database) = %v", err)
	}
	for _, url := range []string{
		"postgres://u:s3cr%3Ft@127.0.0.1:1/db?sslmode=disable", // unreachable
		"postgres://u:s3cret@[bad/db",                          // unparsable
		"postgres://u:s3cret@127.0.0.1:5432/db?sslmode=bogus",
		"host=127.0.0.1 port=1 user=u password=s3cret dbname=db sslmode=disable",
	} {
		_, err := postgres.Open(ctx, url)
		if err == nil {
			t.Fatalf("Open(%q) succeeded", url)
		}
		msg := err.Error()
		if strings.Contains(msg, "s3cr") || strings.Contains(msg, "\n") {
			t.Errorf("Open error leaks the password or spans lines: %q", msg)
		}
		t.Log(msg)
	}
}

// TestSignalAcrossReplicas: a commit through one Store wakes a subscriber
// of another Store on the same database, through LISTEN/NOTIFY.
func TestSignalAcrossReplicas(t *testing.T) {
	url := pgtest.NewDatabase(t)
	a, b := testdb.PostgresAt(t, url), testdb.PostgresAt(t, url)
	l := storetest.MustPutLink(t, a, storetest.NewLink("alice", "github", time.Now().Add(time.Hour)))

	ch, cancel := b.Subscribe(l.ID)
	defer cancel()
	// The listener wakes every subscriber once LISTEN is in place.
	await.Signal(t, "listener connected", ch)

	storetest.MustRefresh(t, a, l, 2)
	await.Signal(t, "CommitRefresh on another replica", ch)

	// A lost write does not signal; a won mark does.
	ok, err := a.MarkReauthRequired(context.Background(), tokenbroker.Lease{LinkID: l.ID, Generation: l.Generation, Owner: "x", Epoch: 99}, tokenbroker.Reauth{Reason: tokenbroker.ReasonRevoked}, tokenbroker.Record{})
	if err != nil || ok {
		t.Fatalf("stale MarkReauthRequired = %v, %v", ok, err)
	}
	cur := storetest.MustGetLink(t, a, "alice", "github")
	ok, err = a.MarkReauthRequired(context.Background(), storetest.MustAcquire(t, a, cur, "a", time.Minute), tokenbroker.Reauth{Reason: tokenbroker.ReasonRevoked, Detail: "invalid_grant"}, tokenbroker.Record{})
	if err != nil || !ok {
		t.Fatalf("MarkReauthRequired = %v, %v", ok, err)
	}
	await.Signal(t, "MarkReauthRequired on another replica", ch)
}

// TestListenerReconnects: when the listener's connection is killed, it
// reconnects by itself and wakes every subscriber, which may have missed
// a signal meanwhile.
func TestListenerReconnects(t *testing.T) {
	c := pgtest.SharedCluster(t)
	url := pgtest.NewDatabase(t)
	a, b := testdb.PostgresAt(t, url), testdb.PostgresAt(t, url)
	l := storetest.MustPutLink(t, a, storetest.NewLink("alice", "github", time.Now().Add(time.Hour)))
	ch, cancel := b.Subscribe(l.ID)
	defer cancel()
	other, cancelOther := b.Subscribe(l.ID + 1000)
	defer cancelOther()
	await.Signal(t, "listener connected", ch)
	await.Signal(t, "listener connected", other)

	ctx := context.Background()
	if n, err := c.Terminate(ctx, url, postgres.ListenerApplicationName); err != nil || n != 1 {
		t.Fatalf("Terminate = %d, %v; want the one listener connection", n, err)
	}
	await.Signal(t, "listener reconnected", ch)
	await.Signal(t, "listener reconnected", other)
	if n := b.Listens(); n < 2 {
		t.Fatalf("listener connected %d times, want a reconnection", n)
	}
	// And it listens again.
	storetest.MustRefresh(t, a, l, 2)
	await.Signal(t, "CommitRefresh after reconnection", ch)
}

func TestNoConnectionHeld(t *testing.T) {
	s := testdb.Postgres(t)
	ctx := context.Background()
	l := storetest.MustPutLink(t, s, storetest.NewLink("alice", "github", time.Now().Add(time.Hour)))
	for i := range 20 {
		if _, err := s.AcquireLease(ctx, tokenbroker.LeaseRequest{LinkID: l.ID, Generation: l.Generation, Owner: fmt.Sprint(i), TTL: -time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Pool().Stat().AcquiredConns(); n != 0 {
		t.Fatalf("%d connections still acquired after the calls returned (I6)", n)
	}
}

// TestMigrateAppliesAMissingLowerVersion: migration numbers land in any
// order, so a database can have 00005 applied and 00003 missing. Its
// schema version is then below the binary's latest (so /readyz is not
// ready, and Migrate does not stop early), and Migrate applies it.
func TestMigrateAppliesAMissingLowerVersion(t *testing.T) {
	ctx := context.Background()
	s, err := postgres.Open(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.RunMigrateMissingLowerVersion(t, s)
}
