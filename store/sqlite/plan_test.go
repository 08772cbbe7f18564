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
