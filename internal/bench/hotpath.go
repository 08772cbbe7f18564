package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apikey"
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
	CPUProfile  string
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
}

// Broker is a whole broker wired in process, as `tokenbroker serve` wires
// it: its HTTP handler and its (sealed) store.
type Broker struct {
	Handler http.Handler
	Store   tokenbroker.Store
	Close   func()
}

// NewBroker wires a broker with its SQLite database in dataDir, serving at
// baseURL, with p as an extra provider.
type NewBroker func(ctx context.Context, dataDir, baseURL string, p provider.ProviderConfig) (*Broker, error)

// RunHotpath loads the broker and a bare net/http handler with a body of
// the same size side by side (see `tokenbroker bench hotpath --help`).
func RunHotpath(ctx context.Context, o HotpathOptions) (*HotpathResult, error) {
	if o.Duration <= 0 || o.Concurrency < 1 || o.Rounds < 1 {
		return nil, errors.New("duration, concurrency and rounds must be positive")
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	baseURL := "http://" + ln.Addr().String()
	ep := idp.Endpoints()
	a, err := o.NewBroker(ctx, dir, baseURL, provider.ProviderConfig{ID: "bench", Kind: "oauth2",
		ClientID: fakeidp.DefaultClientID, ClientSecret: fakeidp.DefaultClientSecret,
		AuthURL: ep.Authorize, TokenURL: ep.Token})
	if err != nil {
		ln.Close()
		return nil, err
	}
	defer a.Close()
	brokerSrv := &http.Server{Handler: a.Handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = brokerSrv.Serve(ln) }()
	defer brokerSrv.Close()

	k, plain, err := apikey.New(nil, "hotpath", []string{tokenbroker.ScopeTokensRead}, nil, nil)
	if err != nil {
		return nil, err
	}
	if _, err := a.Store.CreateAPIKey(ctx, k); err != nil {
		return nil, err
	}
	tok, err := idp.IssueToken("hot-user")
	if err != nil {
		return nil, err
	}
	if _, err := a.Store.PutLink(ctx, &tokenbroker.Link{UserID: "hot-user", ProviderID: "bench",
		Token: tokenbroker.Token{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: "Bearer", Expiry: tok.Expiry}}, tokenbroker.Record{}); err != nil {
		return nil, err
	}
	brokerURL := baseURL + "/api/v1/users/hot-user/providers/bench/token"
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
	res := &HotpathResult{BrokerRPS: float64(broker) / secs, BareRPS: float64(bare) / secs, Concurrency: o.Concurrency,
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
