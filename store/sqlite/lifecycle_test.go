package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	tokenbroker "github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/store/sqlite"
	"github.com/tokenbroker/tokenbroker/store/storetest"
)

// TestLifecycleMigration: 00007 rebuilds links with the new states and
// keeps its rows, their ids and the id sequence (a deleted link's id is
// never reused), counts the links per state, and goes back down.
func TestLifecycleMigration(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.MigrateTo(ctx, 5); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"a", "b", "c"} {
		if err := s.Exec(ctx, `INSERT INTO links (user_id, provider_id, access_token, state, created_at, updated_at)
			VALUES (?, 'github', 'at', ?, 1, 1)`, u, map[bool]string{true: "reauth_required", false: "active"}[u == "b"]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Exec(ctx, `DELETE FROM links WHERE user_id = 'c'`); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	a := storetest.MustGetLink(t, s, "a", "github")
	if a.ID != 1 || a.State != tokenbroker.LinkActive || a.LastUsedAt.IsZero() {
		t.Fatalf("link a after the migration: %+v", a)
	}
	counts, err := s.CountLinksByState(ctx)
	if err != nil || len(counts) != 2 || counts[0].Count != 1 || counts[1].Count != 1 {
		t.Fatalf("counts after the migration = %+v, %v", counts, err)
	}
	d := storetest.MustPutLink(t, s, storetest.NewLink("d", "github", time.Now().Add(time.Hour)))
	if d.ID != 4 {
		t.Fatalf("a new link got id %d, want 4 (id 3 belonged to a deleted link)", d.ID)
	}
	ok, err := s.MarkLinkIdle(ctx, d.ID, d.Generation, time.Now().Add(time.Hour), tokenbroker.Record{})
	if err != nil || !ok {
		t.Fatalf("MarkLinkIdle = %v, %v", ok, err)
	}

	if err := s.MigrateDownTo(ctx, 6); err != nil {
		t.Fatal(err)
	}
	if err := s.Exec(ctx, `UPDATE links SET state = 'degraded' WHERE user_id = 'a'`); err == nil {
		t.Fatal("after the down migration the old states' constraint is back: degraded must be refused")
	}
	if err := s.Exec(ctx, `UPDATE links SET state = 'active' WHERE user_id = 'd' AND state = 'active'`); err != nil {
		t.Fatalf("the idle link is active again after the down migration: %v", err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if e := storetest.MustPutLink(t, s, storetest.NewLink("e", "github", time.Now().Add(time.Hour))); e.ID != 5 {
		t.Fatalf("after down and up a new link got id %d, want 5", e.ID)
	}
}
