package main

import (
	"runtime/debug"
	"testing"
)

// TestVersionLine: version prints the module version and the VCS revision
// the toolchain stamped in the build info.
func TestVersionLine(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/tokenbroker/tokenbroker", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.time", Value: "2026-11-30T06:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	got := versionLine(bi)
	want := "tokenbroker " + version() + " (revision 0123abcd, 2026-11-30T06:00:00Z, modified), go1.26.8"
	if got != want {
		t.Fatalf("versionLine = %q, want %q", got, want)
	}
	if got := versionLine(&debug.BuildInfo{GoVersion: "go1.26.8"}); got != "tokenbroker "+version()+", go1.26.8" {
		t.Fatalf("without VCS settings: %q", got)
	}
}
