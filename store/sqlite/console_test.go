package sqlite_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/internal/testdb"
	"github.com/tokenbroker/tokenbroker/store/storetest"
)

// TestLinkListUsesIndexes: every page the console asks for is a range of
// its index in the list's order, so its cost does not grow with the number
// of links: no sort of the matches (TEMP B-TREE), and every filtered or
// later page seeks (SEARCH) in the index meant for it.
func TestLinkListUsesIndexes(t *testing.T) {
	s := testdb.SQLite(t)
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
			index = "sqlite_autoindex_links_1" // UNIQUE (user_id, provider_id)
		}
		verb := "SEARCH"
		if name == "all" {
			verb = "SCAN"
		}
		uses := false
		for _, line := range strings.Split(plan, "\n") {
			for _, how := range []string{" links USING INDEX ", " links USING COVERING INDEX "} {
				step := verb + how + index
				uses = uses || line == step || strings.HasPrefix(line, step+" ")
			}
		}
		if strings.Contains(plan, "TEMP B-TREE") || !uses {
			t.Errorf("%s: want %s on %s, plan\n%s", name, verb, index, plan)
		}
	}
}
