package migrations

import (
	"slices"
	"testing"
	"testing/fstest"
)

func TestCurrent(t *testing.T) {
	known := []int64{1, 2, 3, 4, 5}
	for _, c := range []struct {
		applied []int64
		want    int64
	}{
		{nil, 0},
		{[]int64{0}, 0},
		{[]int64{0, 1, 2, 3, 4, 5}, 5},
		{[]int64{0, 1, 2, 5}, 2}, // 3 and 4 landed after 5 was applied
		{[]int64{0, 1, 5}, 1},
		{[]int64{0, 2, 3}, 0},
		{[]int64{0, 1, 2, 3, 4, 5, 6}, 6}, // newer than this binary
	} {
		if got := Current(c.applied, known); got != c.want {
			t.Errorf("Current(%v) = %d, want %d", c.applied, got, c.want)
		}
	}
}

func TestVersions(t *testing.T) {
	fsys := fstest.MapFS{
		"m/00001_init.sql":  {},
		"m/00003_more.sql":  {},
		"m/00002_next.sql":  {},
		"m/README.md":       {},
		"other/00009_x.sql": {},
	}
	got := Versions(fsys, "m")
	if !slices.Equal(got, []int64{1, 2, 3}) {
		t.Errorf("Versions = %v, want [1 2 3]", got)
	}
	if l := Latest(got); l != 3 {
		t.Errorf("Latest = %d, want 3", l)
	}
	if l := Latest(nil); l != 0 {
		t.Errorf("Latest(nil) = %d, want 0", l)
	}
}
