package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/testdb"
)

// TestPruneAuditUsesIndexes: a retention batch finds its rows oldest first
// on audit_events_time (no sequential scan, no sort) and deletes each by
// its key, so its cost is the batch's, not the table's.
func TestPruneAuditUsesIndexes(t *testing.T) {
	s := testdb.Postgres(t)
	ctx := context.Background()
	if err := s.SeedAudit(ctx, 20000); err != nil {
		t.Fatal(err)
	}
	plan, err := s.ExplainPruneAudit(ctx, time.Now().Add(-5*time.Hour), 1000)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("plan:\n%s", plan)
	if !strings.Contains(plan, "using audit_events_time on audit_events") ||
		!strings.Contains(plan, "Index Scan using audit_events_pkey on audit_events") ||
		strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "Sort") {
		t.Errorf("want the batch found on audit_events_time and deleted by key, plan\n%s", plan)
	}
}
