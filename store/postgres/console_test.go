package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/internal/testdb"
	"github.com/tokenbroker/tokenbroker/store/storetest"
)

// TestLinkListUsesIndexes: every page the console asks for can be read
// from its index in the list's order: with sequential scans, sorts and
// bitmap scans priced out, the plan is a scan of the index meant for it
// with no sort above it.
func TestLinkListUsesIndexes(t *testing.T) {
	s := testdb.Postgres(t)
	if err := s.SeedLinks(context.Background(), 5000); err != nil {
		t.Fatal(err)
	}
	for name, shape := range storetest.LinkListShapes() {
		plan, err := s.ExplainLinkList(context.Background(), shape.Query)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		index := shape.Index
		if index == "" {
			index = "links_console_user"
		}
		if strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "Sort") || strings.Contains(plan, "Bitmap") ||
			!strings.Contains(plan, " using "+index+" on links") {
			t.Errorf("%s: want a scan of %s, plan\n%s", name, index, plan)
		}
	}
}
