// Package migrations holds what both stores need to say where a database's
// schema stands.
package migrations

import "slices"

// Current is the schema version of a database with the applied versions,
// for a binary that knows the known versions. Migration numbers are
// reserved per change and land in any order, so a database can have a
// higher version applied and a lower one missing: the version is then the
// one just below the first known version not applied, so that it differs
// from the binary's latest and the missing one is applied (or reported).
// A database with a version newer than any known one reports its highest,
// which the stores refuse as too new.
func Current(applied, known []int64) int64 {
	var highest int64
	have := make(map[int64]bool, len(applied))
	for _, v := range applied {
		if v == 0 {
			continue // goose's own initial row
		}
		have[v] = true
		highest = max(highest, v)
	}
	known = slices.Sorted(slices.Values(known))
	if len(known) > 0 && highest > known[len(known)-1] {
		return highest
	}
	var current int64
	for _, v := range known {
		if !have[v] {
			return current
		}
		current = v
	}
	return current
}
