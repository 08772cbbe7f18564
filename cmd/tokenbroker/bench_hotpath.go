package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/provider"
)

func init() { benchSubcommands = append(benchSubcommands, newBenchHotpathCmd) }

type hotpathOptions struct {
	Duration    time.Duration
	Concurrency int
	Rounds      int
	CPUProfile  string
}

type hotpathResult struct {
	BrokerRPS    float64 `json:"broker_rps"`
	BareRPS      float64 `json:"bare_rps"`
	Ratio        float64 `json:"ratio"`
	Concurrency  int     `json:"concurrency"`
	DurationS    float64 `json:"duration_s"`
	BodyBytes    int     `json:"body_bytes"`
	BrokerErrors int64   `json:"broker_errors"`
	Store        string  `json:"store"`
}

func newBenchHotpathCmd() *cobra.Command {
	o := hotpathOptions{}
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
			res, err := runHotpath(cmd.Context(), o)
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

func runHotpath(ctx context.Context, o hotpathOptions) (*hotpathResult, error) {
	dir, err := os.MkdirTemp("", "tokenbroker-hotpath-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	idp, err := fakeidp.Start(fakeidp.Config{AccessTokenTTL: 24 * time.Hour})
	if err != nil {
		return nil, err
	}
	defer idp.Close()
	cfg := defaultServeConfig()
	cfg.Addr, cfg.DataDir = "127.0.0.1:0", dir
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	cfg.BaseURL = "http://" + ln.Addr().String()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := buildApp(ctx, cfg, log, func(_ context.Context, pc *provider.Config) error {
		ep := idp.Endpoints()
		pc.Providers = append(pc.Providers, provider.ProviderConfig{ID: "bench", Kind: "oauth2",
			ClientID: fakeidp.DefaultClientID, ClientSecret: fakeidp.DefaultClientSecret,
			AuthURL: ep.Authorize, TokenURL: ep.Token})
		return nil
	})
	if err != nil {
		ln.Close()
		return nil, err
	}
	defer a.Close()
	brokerSrv := &http.Server{Handler: a.handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = brokerSrv.Serve(ln) }()
	defer brokerSrv.Close()

	plain, _, err := createKey(ctx, a.store, "hotpath", tokenbroker.ScopeTokensRead)
	if err != nil {
		return nil, err
	}
	tok, err := idp.IssueToken("hot-user")
	if err != nil {
		return nil, err
	}
	if _, err := a.store.PutLink(ctx, &tokenbroker.Link{UserID: "hot-user", ProviderID: "bench",
		Token: tokenbroker.Token{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: "Bearer", Expiry: tok.Expiry}}); err != nil {
		return nil, err
	}
	brokerURL := cfg.BaseURL + "/api/v1/users/hot-user/providers/bench/token"
	header := http.Header{"Authorization": {"Bearer " + plain}}

	// The ceiling: a bare handler with a body of the broker's size.
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: o.Concurrency * 2, MaxIdleConnsPerHost: o.Concurrency * 2}}
	defer client.CloseIdleConnections()
	body, err := fetchOnce(ctx, client, brokerURL, header)
	if err != nil {
		return nil, err
	}
	bareLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	bareSrv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
	})}
	go func() { _ = bareSrv.Serve(bareLn) }()
	defer bareSrv.Close()
	bareURL := "http://" + bareLn.Addr().String() + "/token"

	// Warm up both, then alternate so both sides see the same machine.
	slice := o.Duration / time.Duration(o.Rounds)
	load(ctx, client, brokerURL, header, o.Concurrency, slice/4)
	load(ctx, client, bareURL, header, o.Concurrency, slice/4)
	var broker, bare, errs int64
	for range o.Rounds {
		if o.CPUProfile != "" {
			f, err := os.Create(o.CPUProfile)
			if err != nil {
				return nil, err
			}
			_ = pprof.StartCPUProfile(f)
			n, _ := load(ctx, client, brokerURL, header, o.Concurrency, slice)
			pprof.StopCPUProfile()
			f.Close()
			o.CPUProfile = ""
			_ = n
		}
		n, e := load(ctx, client, brokerURL, header, o.Concurrency, slice)
		broker += n
		errs += e
		n, _ = load(ctx, client, bareURL, header, o.Concurrency, slice)
		bare += n
	}
	secs := o.Duration.Seconds()
	res := &hotpathResult{BrokerRPS: float64(broker) / secs, BareRPS: float64(bare) / secs, Concurrency: o.Concurrency,
		DurationS: secs, BodyBytes: len(body), BrokerErrors: errs, Store: "sqlite"}
	if res.BareRPS > 0 {
		res.Ratio = res.BrokerRPS / res.BareRPS
	}
	if errs > 0 {
		return res, fmt.Errorf("%d broker requests failed", errs)
	}
	return res, nil
}

func fetchOnce(ctx context.Context, c *http.Client, url string, h http.Header) ([]byte, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header = h.Clone()
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("token request: HTTP %d: %s", resp.StatusCode, b)
	}
	return b, nil
}

// load sends GETs on conc keep-alive connections for d and returns the
// number of successful and failed requests.
func load(ctx context.Context, c *http.Client, url string, h http.Header, conc int, d time.Duration) (ok, failed int64) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var nOK, nFail atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				req.Header = h.Clone()
				resp, err := c.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						nFail.Add(1)
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					nOK.Add(1)
				} else {
					nFail.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return nOK.Load(), nFail.Load()
}
