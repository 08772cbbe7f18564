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
		Long: `hotpath runs the whole broker in process (SQLite, sealed tokens, API-key auth,
batched audit, the refresh coordinator's fast path) and a bare net/http handler
that returns a body of the same size, and loads both over HTTP with keep-alive
from the same process, alternating between them so both see the same machine.
ratio = broker_rps / bare_rps.`,
		Example: `  tokenbroker bench hotpath
  tokenbroker bench hotpath --duration 10s --concurrency 64 --json`,
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
			fmt.Fprintf(w, "broker %.0f req/s, bare net/http %.0f req/s, ratio %.2f (%d connections, %s each side, %d-byte body)\n",
				res.BrokerRPS, res.BareRPS, res.Ratio, res.Concurrency, time.Duration(res.DurationS*float64(time.Second)), res.BodyBytes)
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
	cmd.Flags().StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the broker rounds to this file")
	return cmd
}

// newBenchBroker wires the broker as serve does, with serve's defaults, on
// SQLite in dataDir, with p as an extra provider.
func newBenchBroker(ctx context.Context, dataDir, baseURL string, p provider.ProviderConfig) (*bench.Broker, error) {
	cfg := defaultServeConfig()
	cfg.Addr, cfg.DataDir, cfg.BaseURL = "127.0.0.1:0", dataDir, baseURL
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := buildApp(ctx, cfg, log, appOptions{extra: func(_ context.Context, pc *provider.Config) error {
		pc.Providers = append(pc.Providers, p)
		return nil
	}})
	if err != nil {
		return nil, err
	}
	return &bench.Broker{Handler: a.handler, Store: a.store, Close: a.Close}, nil
}
