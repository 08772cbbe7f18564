package main

import (
	"github.com/spf13/cobra"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/bench"
)

func init() { benchSubcommands = append(benchSubcommands, newBenchReplicaCmd) }

// newBenchReplicaCmd is the hidden command `bench herd` starts its baseline
// replicas with: serve's wiring with a broken refresh strategy in place of
// the coordinator. `serve` itself has no way to select one, so a
// deployment running serve can never become a baseline.
func newBenchReplicaCmd() *cobra.Command {
	cfg := &serveConfig{}
	var strategy string
	cmd := &cobra.Command{
		Use:    "replica --strategy naive|cas-only [serve flags]",
		Short:  "Run a replica with a broken baseline refresh strategy, for bench herd only",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := bench.NewBaseline(strategy, nil, nil); err != nil {
				return exitf(2, "%v", err)
			}
			if err := cfg.Validate(); err != nil {
				return exitf(2, "%v", err)
			}
			return serveWith(cmd.Context(), cfg, cmd.OutOrStdout(), cmd.ErrOrStderr(), appOptions{
				tokens: func(st tokenbroker.Store, p tokenbroker.Providers) (tokenbroker.TokenService, error) {
					return bench.NewBaseline(strategy, st, p)
				},
			})
		},
	}
	bindServeFlags(cmd.Flags(), cfg, getenvFrom)
	cmd.Flags().StringVar(&strategy, "strategy", "", "naive or cas-only")
	return cmd
}
