package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokenbroker/tokenbroker/internal/bench"
)

func init() { benchSubcommands = append(benchSubcommands, newBenchHerdCmd) }

func newBenchHerdCmd() *cobra.Command {
	o := bench.HerdOptions{}
	var strategies []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "herd",
		Short: "Measure a thundering herd of callers at token expiry across real replicas",
		Long: `herd starts R real "tokenbroker serve" replicas (separate processes) on one
store (SQLite for one replica, a throwaway PostgreSQL cluster for more), and one
fakeidp with single-use rotating refresh tokens and reuse detection. It imports a
link, then lets the token expire --rounds times; at each expiry every caller
(--callers per replica) asks for the token at once. It reports provider refresh
calls, reuse detections, caller errors, broken links and caller latency.

--strategy takes a comma-separated list; the baselines "naive" (every caller
refreshes with its own copy) and "cas-only" (compare-and-swap on the write only)
run in the same harness for a side-by-side comparison, on replicas of a hidden
bench-only command (never "serve").

--kill-holder SIGKILLs the replica holding the lease while its provider call is
in flight (one round) and reports takeover_wait_ms, the longest wait of another
replica's caller for a definite answer (a token or a typed error), and
lost_refreshes: the provider processes the dead holder's request, so its
rotated refresh token dies with it, and the survivor's refresh is a counted
lost refresh (holder_died) that breaks the link.`,
		Example: `  tokenbroker bench herd
  tokenbroker bench herd --replicas 3 --callers 300 --provider-latency 200ms --strategy coordinated,naive,cas-only --json
  tokenbroker bench herd --replicas 3 --callers 100 --kill-holder --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Replicas < 1 || o.Callers < 1 || o.Rounds < 1 || o.Links < 1 {
				return exitf(2, "--replicas, --callers, --rounds and --links must be at least 1")
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			o.Exe, o.Env = exe, os.Environ()
			var results []*bench.HerdResult
			for _, s := range strategies {
				oo := o
				oo.Strategy = s
				fmt.Fprintf(cmd.ErrOrStderr(), "herd: strategy %s, %d replicas x %d callers, %d rounds, provider latency %s\n",
					s, o.Replicas, o.Callers, o.Rounds, o.ProviderLatency)
				res, err := bench.RunHerd(cmd.Context(), oo)
				if err != nil {
					return exitf(1, "herd (%s): %v", s, err)
				}
				results = append(results, res)
			}
			bench.PrintHerd(cmd.OutOrStdout(), results, asJSON)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Replicas, "replicas", 3, "number of tokenbroker serve processes")
	f.IntVar(&o.Callers, "callers", 100, "concurrent callers per replica")
	f.IntVar(&o.Rounds, "rounds", 5, "how many times the token expires")
	f.IntVar(&o.Links, "links", 1, "number of links (users) the callers share")
	f.DurationVar(&o.ProviderLatency, "provider-latency", 200*time.Millisecond, "latency the fake provider adds to each call")
	f.DurationVar(&o.TokenTTL, "token-ttl", 2*time.Second, "access token lifetime at the fake provider")
	f.DurationVar(&o.LeaseTTL, "lease-ttl", 0, "the replicas' refresh lease TTL (default: serve's)")
	f.BoolVar(&o.KillHolder, "kill-holder", false, "SIGKILL the replica holding the lease while its provider call is in flight (one round); reports takeover_wait_ms and lost_refreshes")
	f.StringSliceVar(&strategies, "strategy", []string{bench.StrategyCoordinated}, "comma-separated: coordinated, naive, cas-only")
	f.StringVar(&o.Store, "store", "auto", "auto (SQLite for one replica, PostgreSQL for more), sqlite or postgres")
	f.BoolVar(&asJSON, "json", false, "print one JSON object as the last line of stdout")
	return cmd
}
