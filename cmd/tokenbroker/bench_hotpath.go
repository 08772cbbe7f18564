package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokenbroker/tokenbroker/internal/bench"
	"github.com/tokenbroker/tokenbroker/provider"
)

func init() { benchSubcommands = append(benchSubcommands, newBenchHotpathCmd) }

func newBenchHotpathCmd() *cobra.Command {
	o := bench.HotpathOptions{NewBroker: newBenchBroker}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "hotpath",
		Short: "Measure token requests per second for a valid token, against a bare net/http ceiling",
		Long: `hotpath runs the whole broker in process (sealed tokens, API-key auth,
batched audit, the refresh coordinator's fast path and token cache) and a bare
net/http handler that returns a body of the same size, and loads both over HTTP
with keep-alive from the same process, alternating between them so both see the
same machine. ratio = broker_rps / bare_rps; ratio_median is the median of the
rounds' own ratios (round_ratios), which a burst of other load on the machine
during one side of one round moves less.

--store sqlite is the embedded default; --store postgres starts a throwaway
PostgreSQL cluster (as bench herd does), and --replicas N runs N brokers on it,
each with its own coordinator, cache, listener and audit writer, the load spread
round robin (and N bare handlers on the other side).

allocs_per_req is what the broker allocates per request beyond the bare handler
(the whole process's mallocs per request while loading each side, the load
generator's included on both, subtracted).`,
		Example: `  tokenbroker bench hotpath
  tokenbroker bench hotpath --store postgres --json
  tokenbroker bench hotpath --store postgres --replicas 3 --json
  tokenbroker bench hotpath --duration 10s --concurrency 64 --cpuprofile cpu.out --memprofile mem.out`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Duration <= 0 || o.Concurrency < 1 || o.Rounds < 1 {
				return exitf(2, "--duration, --concurrency and --rounds must be positive")
			}
			res, err := bench.RunHotpath(cmd.Context(), o)
			if err != nil {
				return exitf(1, "hotpath: %v", err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%s, %d replica(s): broker %.0f req/s, bare net/http %.0f req/s, ratio %.2f (median of rounds %.2f), %.1f allocations per request beyond the bare handler (%d connections, %s each side, %d-byte body)\n",
				res.Store, res.Replicas, res.BrokerRPS, res.BareRPS, res.Ratio, res.RatioMedian, res.AllocsPerReq, res.Concurrency, time.Duration(res.DurationS*float64(time.Second)), res.BodyBytes)
			if asJSON {
				b, _ := json.Marshal(res)
				fmt.Fprintln(w, string(b))
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&o.Duration, "duration", 4*time.Second, "load time for each side, split over --rounds")
	cmd.Flags().IntVar(&o.Concurrency, "concurrency", 32, "concurrent keep-alive connections")
	cmd.Flags().IntVar(&o.Rounds, "rounds", 4, "alternations between broker and bare handler")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object as the last line of stdout")
	cmd.Flags().StringVar(&o.Store, "store", "sqlite", "sqlite, or postgres (a throwaway cluster)")
	cmd.Flags().IntVar(&o.Replicas, "replicas", 1, "brokers on one PostgreSQL database, loaded round robin")
	cmd.Flags().StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of an extra broker round (at least 3s) to this file")
	cmd.Flags().StringVar(&o.MemProfile, "memprofile", "", "write the allocation profile of an extra broker round to this file (and the one before it to FILE.base)")
	return cmd
}

// newBenchBroker wires a broker as serve does, with serve's defaults and
// c's store, key, replica id and extra provider.
func newBenchBroker(ctx context.Context, c bench.BrokerConfig) (*bench.Broker, error) {
	cfg := defaultServeConfig()
	cfg.Addr, cfg.DataDir, cfg.BaseURL = "127.0.0.1:0", c.DataDir, c.BaseURL
	cfg.DatabaseURL, cfg.KeyFile, cfg.ReplicaID = c.DatabaseURL, c.KeyFile, c.ReplicaID
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := buildApp(ctx, cfg, log, appOptions{extra: func(_ context.Context, pc *provider.Config) error {
		pc.Providers = append(pc.Providers, c.Provider)
		return nil
	}})
	if err != nil {
		return nil, err
	}
	return &bench.Broker{Handler: a.handler, Store: a.store, Close: a.Close}, nil
}
