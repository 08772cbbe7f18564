package main

import (
	"context"
	"os/exec"
	"syscall"

	"github.com/spf13/cobra"
)

// benchSubcommands lists the `bench` subcommands; each adds itself from its
// own file.
var benchSubcommands []func() *cobra.Command

func init() { commands = append(commands, newBenchCmd) }

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmarks: herd (refresh races across replicas), hotpath (token requests per second)",
		Example: `  tokenbroker bench herd --json
  tokenbroker bench hotpath --json`,
	}
	for _, c := range benchSubcommands {
		cmd.AddCommand(c())
	}
	return cmd
}

// execCommand prepares a child tokenbroker command that dies with its parent.
func execCommand(ctx context.Context, exe string, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}
