package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/tokenbroker/tokenbroker/provider"
)

// TestHelp: the root help names every provider kind; every command, group
// commands included, has an example; every command that reads the
// configuration file takes --config (with --providers as an alias).
func TestHelp(t *testing.T) {
	root := newRootCmd()
	for _, k := range provider.Kinds() {
		if !strings.Contains(root.Long, k) {
			t.Errorf("the root help does not name provider kind %s", k)
		}
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.Hidden && c.Name() != "help" && c.Name() != "completion" && c.Example == "" {
			t.Errorf("%q has no example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			if sub.Parent() == root && (sub.Name() == "completion" || sub.Name() == "help") {
				continue
			}
			walk(sub)
		}
	}
	walk(root)
	for _, path := range [][]string{{"serve"}, {"dev"}, {"providers", "check"}} {
		c, _, err := root.Find(path)
		if err != nil {
			t.Fatal(err)
		}
		if c.Flags().Lookup("config") == nil || c.Flags().Lookup("providers") == nil {
			t.Errorf("%q lacks --config or its alias --providers", c.CommandPath())
		}
	}
}
