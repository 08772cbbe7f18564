package main

import (
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokenbroker/tokenbroker/internal/bench"
)

func init() { benchSubcommands = append(benchSubcommands, newBenchFleetCmd) }

func newBenchFleetCmd() *cobra.Command {
	o := bench.FleetOptions{}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Measure the background refresher keeping a fleet of links fresh",
		Long: `fleet seeds --links links, sealed as the sealing store seals them and
written in batches (SQLite for one replica, a throwaway PostgreSQL cluster for
more), each with its own token family at an in-process fakeidp, their access
tokens expiring from the start of seeding over --window (0: all of them are due by the time the replicas
start). It then starts R real "tokenbroker serve" replicas with the background
refresher on, and measures until every link is refreshed or --duration is over:

  refreshes               generations committed, counted in the database
                          once the replicas have stopped
  provider_refresh_calls  refresh requests fakeidp received (equal to
                          refreshes when no generation is refreshed twice)
  refreshes_per_s         sustained: between 10% and 90% of the refreshes
                          (the replicas' commit counters, every half second)
  cpu_ms_per_refresh      the replicas' CPU time (user and system) per refresh
  errors                  failed and lost refreshes, failed refresher actions
  rss_mb                  the largest peak RSS (VmHWM) of a replica
  scan_p99_ms             the due-links query (ListLinksExpiringBefore, one
                          page of 500), timed on the benchmark's own
                          connection every half second during the run
  db_size_mb              the database at the end

--interval and --concurrency set the replicas' background refresher
(--background-refresh-interval and --background-refresh-concurrency).`,
		Example: `  tokenbroker bench fleet --links 100000 --json
  tokenbroker bench fleet --links 100000 --replicas 3 --store postgres --json
  tokenbroker bench fleet --links 1000000 --duration 2m --provider-latency 50ms --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Links < 1 || o.Replicas < 1 || o.Duration <= 0 || o.Window < 0 {
				return exitf(2, "--links, --replicas and --duration must be positive, --window not negative")
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			o.Exe, o.Env, o.Log = exe, os.Environ(), cmd.ErrOrStderr()
			res, err := bench.RunFleet(cmd.Context(), o)
			if err != nil {
				return exitf(1, "fleet: %v", err)
			}
			bench.PrintFleet(cmd.OutOrStdout(), res, asJSON)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Links, "links", 10000, "links to seed")
	f.IntVar(&o.Replicas, "replicas", 1, "number of tokenbroker serve processes")
	f.StringVar(&o.Store, "store", "auto", "auto (SQLite for one replica, PostgreSQL for more), sqlite or postgres")
	f.DurationVar(&o.ProviderLatency, "provider-latency", 0, "latency the fake provider adds to each call")
	f.DurationVar(&o.Window, "window", 0, "spread of the seeded expiries, from the start of seeding")
	f.DurationVar(&o.Duration, "duration", 5*time.Minute, "longest measurement; it ends when every link is refreshed")
	f.DurationVar(&o.Interval, "interval", 0, "the replicas' background refresh interval (default: serve's)")
	f.IntVar(&o.Concurrency, "concurrency", 0, "the replicas' background refresh concurrency (default: serve's)")
	f.BoolVar(&asJSON, "json", false, "print one JSON object as the last line of stdout")
	return cmd
}
