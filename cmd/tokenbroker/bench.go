package main

import (
	"github.com/spf13/cobra"
)

// benchSubcommands lists the `bench` subcommands; each adds itself from its
// own file. The harness itself is internal/bench; these files only wire it.
var benchSubcommands []func() *cobra.Command

func init() { commands = append(commands, newBenchCmd) }

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmarks: herd (refresh races across replicas), hotpath (token requests per second), fleet (background refresh of many links)",
		Example: `  tokenbroker bench herd --json
  tokenbroker bench hotpath --json
  tokenbroker bench fleet --links 100000 --json`,
	}
	for _, c := range benchSubcommands {
		cmd.AddCommand(c())
	}
	return cmd
}
