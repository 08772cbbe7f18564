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

// TestDueLinksScanUsesIndex: the background refresher's due-links page is
// read in order from links_refresh_expiry (expiry, id), starting at the
// soonest expiry and stopping at the page's end: its cost is the due
// links it returns, whatever the size of the fleet (no sequential scan, no
// sort), also when the due links share one expiry (a bulk import), where
// an index on expiry alone sorts every tie on each page.
func TestDueLinksScanUsesIndex(t *testing.T) {
	for _, tied := range []bool{false, true} {
		t.Run(map[bool]string{false: "spread", true: "tied"}[tied], func(t *testing.T) {
			s := testdb.Postgres(t)
			ctx := context.Background()
			// Many due links: with a handful, sorting them all is the
			// planner's (right) choice, and costs as little.
			if err := s.SeedExpiringLinks(ctx, 20000, 10000, tied); err != nil {
				t.Fatal(err)
			}
			plan, err := s.ExplainDueLinks(ctx, time.Now(), 500)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("plan:\n%s", plan)
			if !strings.Contains(plan, "Index Scan using links_refresh_expiry on links") ||
				strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "Bitmap") || strings.Contains(plan, "Sort") {
				t.Errorf("want a range of links_refresh_expiry in order, plan\n%s", plan)
			}
		})
	}
}
