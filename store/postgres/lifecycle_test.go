package postgres_test

import (
	"context"
	"testing"
	"time"

	tokenbroker "github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/pgtest"
	"github.com/tokenbroker/tokenbroker/store/postgres"
	"github.com/tokenbroker/tokenbroker/store/storetest"
)

// TestLifecycleMigration: 00007 allows the new states, stamps existing
// links as used, counts the links per state, and goes back down.
func TestLifecycleMigration(t *testing.T) {
	ctx := context.Background()
	s, err := postgres.Open(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.MigrateTo(ctx, 5); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"a", "b"} {
		if _, err := s.Pool().Exec(ctx, `INSERT INTO links (user_id, provider_id, access_token, state) VALUES ($1, 'github', 'at', $2)`,
			u, map[bool]string{true: "reauth_required", false: "active"}[u == "b"]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if a := storetest.MustGetLink(t, s, "a", "github"); a.State != tokenbroker.LinkActive || a.LastUsedAt.IsZero() {
		t.Fatalf("link a after the migration: %+v", a)
	}
	counts, err := s.CountLinksByState(ctx)
	if err != nil || len(counts) != 2 || counts[0].Count != 1 || counts[1].Count != 1 {
		t.Fatalf("counts after the migration = %+v, %v", counts, err)
	}
	d := storetest.MustPutLink(t, s, storetest.NewLink("d", "github", time.Now().Add(time.Hour)))
	if ok, err := s.MarkLinkIdle(ctx, d.ID, d.Generation, time.Now().Add(time.Hour), tokenbroker.Record{}); err != nil || !ok {
		t.Fatalf("MarkLinkIdle = %v, %v", ok, err)
	}
	if err := s.MigrateDownTo(ctx, 6); err != nil {
		t.Fatal(err)
	}
	var idle int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM links WHERE state NOT IN ('active', 'reauth_required')`).Scan(&idle); err != nil || idle != 0 {
		t.Fatalf("links in new states after the down migration: %d, %v", idle, err)
	}
	if _, err := s.Pool().Exec(ctx, `UPDATE links SET state = 'degraded' WHERE user_id = 'a'`); err == nil {
		t.Fatal("after the down migration degraded must be refused")
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
}
