package migrations

import "testing"

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
