package storetest

import (
	"context"
	"fmt"
	"io/fs"
	"testing"
	"testing/fstest"
)

// MigrationsWithout is the migrations of fsys (files named
// "<version>_<name>.sql") but the one numbered skip: the migrations of a
// binary built before skip landed, with later numbers.
func MigrationsWithout(fsys fs.FS, skip int64) fs.FS {
	out := fstest.MapFS{}
	ents, _ := fs.ReadDir(fsys, ".")
	for _, e := range ents {
		var v int64
		if _, err := fmt.Sscanf(e.Name(), "%d_", &v); err == nil && v == skip {
			continue
		}
		b, _ := fs.ReadFile(fsys, e.Name())
		out[e.Name()] = &fstest.MapFile{Data: b}
	}
	return out
}

// PartlyMigrated is a store whose tests can apply all its migrations but
// one (the stores' export_test.go gives them MigrateWithout).
type PartlyMigrated interface {
	MigrateWithout(ctx context.Context, skip int64) error
	Migrate(ctx context.Context) error
	SchemaVersion(ctx context.Context) (current, latest int64, err error)
}

// RunMigrateMissingLowerVersion checks what happens to a database with
// 00003 missing and later migrations applied, as migration numbers land in
// any order: its schema version is the one below the gap (2), not the
// binary's latest (so /readyz is not ready, and Migrate does not stop
// early), and Migrate applies the missing one. s is a fresh, unmigrated
// store.
func RunMigrateMissingLowerVersion(t *testing.T, s PartlyMigrated) {
	t.Helper()
	ctx := context.Background()
	if err := s.MigrateWithout(ctx, 3); err != nil {
		t.Fatal(err)
	}
	cur, latest, err := s.SchemaVersion(ctx)
	if err != nil || cur != 2 || latest <= 3 {
		t.Fatalf("SchemaVersion with 00003 missing = %d, %d, %v; want 2 and the latest", cur, latest, err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate with a lower version missing: %v", err)
	}
	if cur, latest, err = s.SchemaVersion(ctx); err != nil || cur != latest {
		t.Fatalf("SchemaVersion after Migrate = %d, %d, %v", cur, latest, err)
	}
}
