package migrations

import (
	"fmt"
	"io/fs"
)

// Versions lists the schema versions of the goose migration files
// ("<version>_<name>.sql") in dir of fsys, in directory order.
func Versions(fsys fs.FS, dir string) []int64 {
	ents, _ := fs.ReadDir(fsys, dir)
	var out []int64
	for _, e := range ents {
		var v int64
		if _, err := fmt.Sscanf(e.Name(), "%d_", &v); err == nil {
			out = append(out, v)
		}
	}
	return out
}

// Latest returns the highest of versions, 0 when there is none.
func Latest(versions []int64) int64 {
	var latest int64
	for _, v := range versions {
		latest = max(latest, v)
	}
	return latest
}
