package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apikey"
	"github.com/tokenbroker/tokenbroker/crypt"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/provider"
)

// HotpathOptions configures one hotpath run.
type HotpathOptions struct {
	// NewBroker wires the broker under load.
	NewBroker   NewBroker
	Duration    time.Duration
	Concurrency int
	Rounds      int
	// Store is sqlite (the embedded default) or postgres (a throwaway
	// cluster, as bench herd starts).
	Store string
	// Replicas is how many brokers serve the load, round robin, each
	// with its own coordinator, token cache and audit batcher, on one
	// PostgreSQL database (SQLite: 1).
	Replicas   int
	CPUProfile string
	// MemProfile, if set, receives the allocation profile of one extra
	// broker round, and MemProfile+".base" the one before it, for
	// go tool pprof -diff_base.
	MemProfile string
}

// HotpathResult is what `bench hotpath --json` prints.
type HotpathResult struct {
	BrokerRPS    float64 `json:"broker_rps"`
	BareRPS      float64 `json:"bare_rps"`
	Ratio        float64 `json:"ratio"`
	Concurrency  int     `json:"concurrency"`
	DurationS    float64 `json:"duration_s"`
	BodyBytes    int     `json:"body_bytes"`
	BrokerErrors int64   `json:"broker_errors"`
	Store        string  `json:"store"`
	Replicas     int     `json:"replicas"`
	// Allocations per request of the whole process (load generator
	// included) while it loads the broker, and while it loads the bare
	// handler; their difference is what the broker allocates per request
	// beyond a bare handler (audit and cache upkeep included).
	BrokerAllocsPerReq float64 `json:"broker_allocs_per_req"`
	BareAllocsPerReq   float64 `json:"bare_allocs_per_req"`
	AllocsPerReq       float64 `json:"allocs_per_req"`
	BrokerBytesPerReq  float64 `json:"broker_bytes_per_req"`
	BareBytesPerReq    float64 `json:"bare_bytes_per_req"`
	// RoundRatios is each alternation's broker/bare ratio, and
	// RatioMedian their median: on a machine shared with other work a
	// burst of load falls into one side of one round, which the median
	// shows and the ratio of the totals does not.
	RoundRatios []float64 `json:"round_ratios"`
	RatioMedian float64   `json:"ratio_median"`
}

// Broker is a whole broker wired in process, as `tokenbroker serve` wires
// it: its HTTP handler and its (sealed) store.
type Broker struct {
	Handler http.Handler
	Store   tokenbroker.Store
	Close   func()
}

// BrokerConfig is what [NewBroker] wires a broker with.
type BrokerConfig struct {
	DataDir     string // SQLite's directory (and the dev key's)
	DatabaseURL string // PostgreSQL; empty: SQLite in DataDir
	KeyFile     string // the encryption key ring, shared by the replicas
	BaseURL     string
	ReplicaID   string
	// Provider is added to the broker's providers.
	Provider provider.ProviderConfig
}

// NewBroker wires one broker.
type NewBroker func(ctx context.Context, c BrokerConfig) (*Broker, error)

// RunHotpath loads the broker and a bare net/http handler with a body of
// the same size side by side (see `tokenbroker bench hotpath --help`).
func RunHotpath(ctx context.Context, o HotpathOptions) (*HotpathResult, error) {
	if o.Duration <= 0 || o.Concurrency < 1 || o.Rounds < 1 {
		return nil, errors.New("duration, concurrency and rounds must be positive")
	}
	if o.Replicas < 1 {
		o.Replicas = 1
	}
	if o.Store == "" {
		o.Store = "sqlite"
	}
	switch {
	case o.Store != "sqlite" && o.Store != "postgres":
		return nil, fmt.Errorf("unknown store %q: want sqlite or postgres", o.Store)
	case o.Store == "sqlite" && o.Replicas > 1:
		return nil, errors.New("SQLite serves one replica; use --store postgres for more")
	}
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
	var dbURL string
	if o.Store == "postgres" {
		var stop func() error
		if dbURL, stop, err = throwawayDatabase(ctx, "use --store sqlite"); err != nil {
			return nil, err
		}
		defer stop()
	}
	key, err := crypt.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		return nil, err
	}
	ep := idp.Endpoints()
	pc := provider.ProviderConfig{ID: "bench", Kind: "oauth2",
		ClientID: fakeidp.DefaultClientID, ClientSecret: fakeidp.DefaultClientSecret,
		AuthURL: ep.Authorize, TokenURL: ep.Token}

	// The brokers, each on its own listener.
	var brokerURLs []string
	var first *Broker
	for i := range o.Replicas {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		baseURL := "http://" + ln.Addr().String()
		a, err := o.NewBroker(ctx, BrokerConfig{DataDir: filepath.Join(dir, fmt.Sprint("data-", i)), DatabaseURL: dbURL,
			KeyFile: keyFile, BaseURL: baseURL, ReplicaID: fmt.Sprint("r", i), Provider: pc})
		if err != nil {
			ln.Close()
			return nil, err
		}
		defer a.Close()
		srv := &http.Server{Handler: a.Handler, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		brokerURLs = append(brokerURLs, baseURL+"/api/v1/users/hot-user/providers/bench/token")
		if first == nil {
			first = a
		}
	}

	k, plain, err := apikey.New(nil, "hotpath", []string{tokenbroker.ScopeTokensRead}, nil, nil)
	if err != nil {
		return nil, err
	}
	if _, err := first.Store.CreateAPIKey(ctx, k); err != nil {
		return nil, err
	}
	tok, err := idp.IssueToken("hot-user")
	if err != nil {
		return nil, err
	}
	if _, err := first.Store.PutLink(ctx, &tokenbroker.Link{UserID: "hot-user", ProviderID: "bench",
		Token: tokenbroker.Token{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: "Bearer", Expiry: tok.Expiry}}, tokenbroker.Record{}); err != nil {
		return nil, err
	}
	header := http.Header{"Authorization": {"Bearer " + plain}}

	// The ceiling: bare handlers (one per broker) with a body of the
	// broker's size.
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: o.Concurrency * 2, MaxIdleConnsPerHost: o.Concurrency * 2}}
	defer client.CloseIdleConnections()
	body, err := fetchOnce(ctx, client, brokerURLs[0], header)
	if err != nil {
		return nil, err
	}
	var bareURLs []string
	for range o.Replicas {
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
		bareURLs = append(bareURLs, "http://"+bareLn.Addr().String()+"/token")
	}

	// Warm up both, then alternate so both sides see the same machine.
	slice := o.Duration / time.Duration(o.Rounds)
	load(ctx, client, brokerURLs, header, o.Concurrency, slice/4)
	load(ctx, client, bareURLs, header, o.Concurrency, slice/4)
	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return nil, err
		}
		_ = pprof.StartCPUProfile(f)
		load(ctx, client, brokerURLs, header, o.Concurrency, max(slice, 3*time.Second))
		pprof.StopCPUProfile()
		f.Close()
	}
	if o.MemProfile != "" {
		if err := writeAllocs(o.MemProfile + ".base"); err != nil {
			return nil, err
		}
		load(ctx, client, brokerURLs, header, o.Concurrency, slice)
		if err := writeAllocs(o.MemProfile); err != nil {
			return nil, err
		}
	}
	var broker, bare, errs int64
	var brokerMem, bareMem allocs
	var ratios []float64
	// Rounds alternate which side goes first (broker, bare, bare, broker,
	// ...), so that neither always runs after the other's garbage.
	for i := range o.Rounds {
		var n, nb int64
		brokerSide := func() {
			m := readAllocs()
			var e int64
			n, e = load(ctx, client, brokerURLs, header, o.Concurrency, slice)
			brokerMem.add(m, readAllocs())
			broker += n
			errs += e
		}
		bareSide := func() {
			m := readAllocs()
			nb, _ = load(ctx, client, bareURLs, header, o.Concurrency, slice)
			bareMem.add(m, readAllocs())
			bare += nb
		}
		if i%2 == 0 {
			brokerSide()
			bareSide()
		} else {
			bareSide()
			brokerSide()
		}
		if nb > 0 {
			ratios = append(ratios, float64(n)/float64(nb))
		}
	}
	secs := o.Duration.Seconds()
	res := &HotpathResult{BrokerRPS: float64(broker) / secs, BareRPS: float64(bare) / secs, Concurrency: o.Concurrency,
		DurationS: secs, BodyBytes: len(body), BrokerErrors: errs, Store: o.Store, Replicas: o.Replicas}
	if res.BareRPS > 0 {
		res.Ratio = res.BrokerRPS / res.BareRPS
	}
	res.RoundRatios = ratios
	if len(ratios) > 0 {
		sorted := slices.Sorted(slices.Values(ratios))
		res.RatioMedian = (sorted[(len(sorted)-1)/2] + sorted[len(sorted)/2]) / 2
	}
	if broker > 0 && bare > 0 {
		res.BrokerAllocsPerReq = float64(brokerMem.mallocs) / float64(broker)
		res.BareAllocsPerReq = float64(bareMem.mallocs) / float64(bare)
		res.AllocsPerReq = res.BrokerAllocsPerReq - res.BareAllocsPerReq
		res.BrokerBytesPerReq = float64(brokerMem.bytes) / float64(broker)
		res.BareBytesPerReq = float64(bareMem.bytes) / float64(bare)
	}
	if errs > 0 {
		return res, fmt.Errorf("%d broker requests failed", errs)
	}
	return res, nil
}

// allocs counts heap allocations over the rounds of one side.
type allocs struct{ mallocs, bytes uint64 }

func readAllocs() runtime.MemStats {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

func (a *allocs) add(before, after runtime.MemStats) {
	a.mallocs += after.Mallocs - before.Mallocs
	a.bytes += after.TotalAlloc - before.TotalAlloc
}

func writeAllocs(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
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

// load sends GETs on conc keep-alive connections for d, spread round
// robin over urls, and returns the number of successful and failed
// requests.
func load(ctx context.Context, c *http.Client, urls []string, h http.Header, conc int, d time.Duration) (ok, failed int64) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var nOK, nFail atomic.Int64
	var wg sync.WaitGroup
	for i := range conc {
		url := urls[i%len(urls)]
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
