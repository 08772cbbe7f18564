package sqlite_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/testdb"
)

// TestPruneAuditUsesIndexes: a retention batch finds its rows oldest first
// on audit_events_time (no scan of the table, no sort) and deletes each by
// its key, so its cost is the batch's, not the table's.
func TestPruneAuditUsesIndexes(t *testing.T) {
	s := testdb.SQLite(t)
	ctx := context.Background()
	if err := s.SeedAudit(ctx, 20000); err != nil {
		t.Fatal(err)
	}
	plan, err := s.ExplainPruneAudit(ctx, time.Now().Add(-5*time.Hour), 1000)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("plan:\n%s", plan)
	if !strings.Contains(plan, "SEARCH audit_events USING INTEGER PRIMARY KEY") ||
		!strings.Contains(plan, "SEARCH audit_events USING COVERING INDEX audit_events_time (time<?)") ||
		strings.Contains(plan, "SCAN audit_events") || strings.Contains(plan, "TEMP B-TREE") {
		t.Errorf("want the batch found on audit_events_time and deleted by key, plan\n%s", plan)
	}
}

// TestDueLinksScanUsesIndex: the background refresher's due-links page is
// read in order from links_refresh_expiry, starting at the soonest
// expiry and stopping at the page's end: its cost is the due links it
// returns, whatever the size of the fleet (no scan of links, no sort).
// Both without the planner's statistics, as a deployment's database is
// (nothing runs ANALYZE), and with them.
func TestDueLinksScanUsesIndex(t *testing.T) {
	s := testdb.SQLite(t)
	ctx := context.Background()
	if err := s.SeedExpiringLinks(ctx, 20000, 300); err != nil {
		t.Fatal(err)
	}
	for _, stats := range []string{"without statistics", "after ANALYZE"} {
		if stats == "after ANALYZE" {
			if err := s.Analyze(ctx); err != nil {
				t.Fatal(err)
			}
		}
		plan, err := s.ExplainDueLinks(ctx, time.Now(), 500)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("plan %s:\n%s", stats, plan)
		if !strings.HasPrefix(plan, "SEARCH links USING INDEX links_refresh_expiry (") ||
			strings.Contains(plan, "SCAN links") || strings.Contains(plan, "TEMP B-TREE") {
			t.Errorf("%s: want a range of links_refresh_expiry in order, plan\n%s", stats, plan)
		}
	}
}
