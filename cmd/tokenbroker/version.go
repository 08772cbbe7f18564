package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is set at build time with -ldflags "-X main.Version=v1.2.3".
var Version = ""

func init() { commands = append(commands, newVersionCmd) }

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// versionLine is what `tokenbroker version` prints: the version (from
// -ldflags or the module version), then the VCS revision, its time and
// whether the tree was modified, as the Go toolchain stamped them in the
// build info, and the Go version.
func versionLine(bi *debug.BuildInfo) string {
	s := "tokenbroker " + version()
	if bi == nil {
		return s
	}
	settings := map[string]string{}
	for _, kv := range bi.Settings {
		settings[kv.Key] = kv.Value
	}
	if rev := settings["vcs.revision"]; rev != "" {
		s += " (revision " + rev
		if t := settings["vcs.time"]; t != "" {
			s += ", " + t
		}
		if settings["vcs.modified"] == "true" {
			s += ", modified"
		}
		s += ")"
	}
	return s + ", " + bi.GoVersion
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version, the VCS revision it was built from and the Go version",
		Example: "  tokenbroker version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			bi, _ := debug.ReadBuildInfo()
			fmt.Fprintln(cmd.OutOrStdout(), versionLine(bi))
			return nil
		},
	}
}
