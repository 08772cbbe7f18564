package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/client"
	"github.com/tokenbroker/tokenbroker/crypt"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/refresh"
	"github.com/tokenbroker/tokenbroker/store/postgres"
)

// HerdOptions configures one herd run.
type HerdOptions struct {
	// Exe is the tokenbroker binary the replicas run, with Env as their
	// environment (the benchmark adds the store, key and provider).
	Exe             string
	Env             []string
	Replicas        int
	Callers         int // per replica
	Rounds          int
	Links           int
	ProviderLatency time.Duration
	TokenTTL        time.Duration
	Strategy        string
	Store           string        // auto, sqlite, postgres
	LeaseTTL        time.Duration // 0: serve's default
	// KillHolder SIGKILLs the replica holding a link's lease while its
	// provider call is in flight, in the first round (which is then the only
	// one), and measures how long the other replicas' callers wait for a
	// definite answer.
	KillHolder bool
}

// HerdResult is what `bench herd --json` prints, one per strategy.
type HerdResult struct {
	Strategy             string         `json:"strategy"`
	Store                string         `json:"store"`
	Replicas             int            `json:"replicas"`
	Callers              int            `json:"callers"`
	Rounds               int            `json:"rounds"`
	Links                int            `json:"links"`
	ProviderLatencyMS    float64        `json:"provider_latency_ms"`
	ProviderRefreshCalls int64          `json:"provider_refresh_calls"`
	ReuseDetections      int64          `json:"reuse_detections"`
	CallerErrors         int            `json:"caller_errors"`
	CallerRequests       int            `json:"caller_requests"`
	LinksBroken          int            `json:"links_broken"`
	DistinctTokensMax    int            `json:"distinct_tokens_per_round_max"`
	LatencyMS            LatencySummary `json:"latency_ms"`
	ErrorCodes           map[string]int `json:"error_codes,omitempty"`
	// BurstLatencyMS is the latency of the same callers asking all at
	// once for a token that is valid (after each round, the cache warmed
	// by one request per replica and link): serving that many answers on
	// this machine, without any refresh. CoordinationMS is what the herd
	// costs beyond it and the provider: p99 - provider latency - burst
	// p99.
	BurstLatencyMS LatencySummary `json:"burst_latency_ms"`
	BurstRequests  int            `json:"burst_requests"`
	BurstErrors    int            `json:"burst_errors"`
	CoordinationMS float64        `json:"coordination_ms"`
	// ToProviderMS is, per round, how long after the herd started the
	// first refresh request reached the provider; AfterProviderMS the
	// round's p99 latency less that and the provider's latency: the time
	// from the provider's answer to the answers of 99% of the callers.
	ToProviderMS    LatencySummary `json:"to_provider_ms"`
	AfterProviderMS LatencySummary `json:"after_provider_ms"`
	// ProviderCallMS is the mean provider refresh call as the holders
	// timed it (their tokenbroker_provider_refresh_duration_seconds): the
	// provider's latency plus the HTTP round trip to it on this loaded
	// machine. CoordinationBeyondCallMS is p99 - ProviderCallMS - burst
	// p99: what remains once the call itself is counted as the provider's.
	ProviderCallMS           float64 `json:"provider_call_ms,omitempty"`
	CoordinationBeyondCallMS float64 `json:"coordination_beyond_call_ms,omitempty"`
	// With KillHolder: the killed replica, the longest wait of a caller of
	// another replica for a definite answer (a token or a typed error),
	// the callers of the killed replica (left out of the other figures),
	// and the refreshes the surviving replicas counted as lost
	// (tokenbroker_refresh_lost_total: the dead holder's rotated token).
	KilledReplica  string  `json:"killed_replica,omitempty"`
	TakeoverWaitMS float64 `json:"takeover_wait_ms,omitempty"`
	KilledCallers  int     `json:"killed_replica_callers,omitempty"`
	LostRefreshes  float64 `json:"lost_refreshes"`
	// RoundTokens holds, per round and link, the distinct access tokens
	// callers got (only in tests; never printed).
	RoundTokens [][]int `json:"-"`
	// ReplicaLogs are the replicas' stderr (only in tests).
	ReplicaLogs []string `json:"-"`
}

// LatencySummary is a latency distribution in milliseconds.
type LatencySummary struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// PrintHerd writes results as a table, then, with asJSON, as one JSON
// object on the last line: the result itself for one strategy, else
// {"results": [...]}.
func PrintHerd(w io.Writer, results []*HerdResult, asJSON bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "strategy\tstore\treplicas\tcallers\trounds\tprovider calls\treuse detections\tcaller errors\tlinks broken\tlost refreshes\tp50 ms\tp99 ms\tmax ms\tprovider latency ms\tburst p99 ms\tcoordination ms\ttakeover wait ms")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.0f\t%.1f\t%.1f\t%.1f\t%.0f\t%.1f\t%.1f\t%.0f\n", r.Strategy, r.Store, r.Replicas, r.Callers, r.Rounds,
			r.ProviderRefreshCalls, r.ReuseDetections, r.CallerErrors, r.LinksBroken, r.LostRefreshes, r.LatencyMS.P50, r.LatencyMS.P99, r.LatencyMS.Max,
			r.ProviderLatencyMS, r.BurstLatencyMS.P99, r.CoordinationMS, r.TakeoverWaitMS)
	}
	tw.Flush()
	if !asJSON {
		return
	}
	var b []byte
	if len(results) == 1 {
		b, _ = json.Marshal(results[0])
	} else {
		b, _ = json.Marshal(map[string]any{"results": results})
	}
	fmt.Fprintln(w, string(b))
}

// RunHerd runs one herd of o.Strategy: the coordinator on `serve`
// replicas, a baseline on `bench replica` replicas.
func RunHerd(ctx context.Context, o HerdOptions) (res *HerdResult, err error) {
	if o.Replicas < 1 || o.Callers < 1 || o.Rounds < 1 || o.Links < 1 {
		return nil, errors.New("replicas, callers, rounds and links must be at least 1")
	}
	command := []string{"serve"}
	if o.Strategy != StrategyCoordinated {
		if _, err := NewBaseline(o.Strategy, nil, nil); err != nil {
			return nil, err
		}
		command = []string{"bench", "replica", "--strategy", o.Strategy}
	}
	store, err := resolveStore(o.Store, o.Replicas)
	if err != nil {
		return nil, err
	}
	if o.KillHolder {
		if o.Replicas < 2 || store != "postgres" || o.Strategy != StrategyCoordinated {
			return nil, errors.New("--kill-holder needs the coordinated strategy on at least 2 replicas (PostgreSQL)")
		}
		o.Rounds = 1
	}
	dir, err := os.MkdirTemp("", "tokenbroker-herd-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	// The provider: single-use rotating refresh tokens, reuse detection on.
	// While armed, the first token request of a round is announced.
	var armed atomic.Bool
	tokenRequest := make(chan struct{}, 1)
	// The arrival of each round's first refresh at the provider.
	var firstRefresh atomic.Pointer[time.Time]
	idp, err := fakeidp.Start(fakeidp.Config{AccessTokenTTL: o.TokenTTL, Faults: fakeidp.Faults{Latency: o.ProviderLatency},
		OnRequest: func(endpoint string) {
			if endpoint != "token" {
				return
			}
			now := time.Now()
			firstRefresh.CompareAndSwap(nil, &now)
			if armed.CompareAndSwap(true, false) {
				tokenRequest <- struct{}{}
			}
		}})
	if err != nil {
		return nil, err
	}
	defer idp.Close()

	var dbURL string
	if store == "postgres" {
		var stop func() error
		if dbURL, stop, err = throwawayDatabase(ctx, "run one replica on SQLite: --replicas 1"); err != nil {
			return nil, err
		}
		defer stop()
	}
	key, err := crypt.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	env := append(slices.Clip(o.Env), ReplicaEnv(idp, key, dbURL, filepath.Join(dir, "data"))...)
	env = append(env, "TOKENBROKER_LOG_LEVEL=warn")

	// Migrate once, then create an admin key on the database directly.
	apiKey, err := Setup(ctx, o.Exe, env)
	if err != nil {
		return nil, err
	}

	var replicas []*Replica
	defer func() {
		for _, r := range replicas {
			if serr := r.Stop(); serr != nil && err == nil {
				err = serr
			}
			if res != nil {
				res.ReplicaLogs = append(res.ReplicaLogs, r.Logs())
			}
		}
	}()
	for i := range o.Replicas {
		args := append(slices.Clip(command), "--addr", "127.0.0.1:0", "--replica-id", fmt.Sprintf("r%d", i))
		if o.LeaseTTL > 0 {
			args = append(args, "--lease-ttl", o.LeaseTTL.String())
		}
		r, err := StartReplica(ctx, fmt.Sprintf("replica-%d", i), o.Exe, args, env)
		if err != nil {
			return nil, err
		}
		replicas = append(replicas, r)
	}

	// Seed the links through the import API of the first replica.
	admin := client.New(replicas[0].URL, apiKey)
	users := make([]string, o.Links)
	expiry := time.Time{}
	for i := range users {
		users[i] = fmt.Sprintf("herd-user-%d", i)
		tok, err := idp.IssueToken(users[i])
		if err != nil {
			return nil, err
		}
		if _, err := admin.ImportLink(ctx, users[i], "bench", client.ImportRequest{
			AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: "Bearer", Expiry: &tok.Expiry,
		}); err != nil {
			return nil, fmt.Errorf("import link: %w", err)
		}
		if expiry.IsZero() || tok.Expiry.After(expiry) {
			expiry = tok.Expiry
		}
	}

	// One keep-alive API client per replica, warmed up with a valid token.
	clients := make([]*client.Client, len(replicas))
	for i, r := range replicas {
		hc := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
			MaxIdleConns: o.Callers * 2, MaxIdleConnsPerHost: o.Callers * 2, IdleConnTimeout: time.Minute,
		}}
		defer hc.CloseIdleConnections()
		clients[i] = client.New(r.URL, apiKey, client.WithHTTPClient(hc))
	}
	type sample struct {
		ms    float64
		token string
		code  string
		exp   time.Time
	}
	fetch := func(ctx context.Context, ri int, user string) sample {
		start := time.Now()
		tok, err := clients[ri].Token(ctx, user, "bench", 0)
		s := sample{ms: float64(time.Since(start).Microseconds()) / 1000}
		var ce *client.Error
		switch {
		case err == nil:
			s.token, s.exp = tok.AccessToken, tok.Expiry
		case errors.As(err, &ce):
			s.code = ce.Code
		default:
			s.code = "transport"
		}
		return s
	}
	var warm sync.WaitGroup
	for ri := range replicas {
		for c := range o.Callers {
			warm.Add(1)
			go func() {
				defer warm.Done()
				fetch(ctx, ri, users[c%len(users)])
			}()
		}
	}
	warm.Wait()
	before := idp.Stats()
	// The replicas' own view of their provider calls (sum and count of
	// the latency histogram), to tell the provider's time from the rest.
	callsBefore, err := scrapeProviderCalls(ctx, replicas)
	if err != nil {
		return nil, err
	}

	res = &HerdResult{Strategy: o.Strategy, Store: store, Replicas: o.Replicas, Callers: o.Callers, Rounds: o.Rounds,
		Links: o.Links, ProviderLatencyMS: float64(o.ProviderLatency.Microseconds()) / 1000, ErrorCodes: map[string]int{}}
	var lat, burstLat, toProvider, afterProvider []float64
	lastToken := map[string]string{}
	// burst asks for the valid token with every caller at once, after one
	// request per replica and link has filled the replicas' caches.
	burst := func() {
		for ri := range replicas {
			for _, u := range users {
				fetch(ctx, ri, u)
			}
		}
		samples := make([][]sample, len(replicas))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for ri := range replicas {
			samples[ri] = make([]sample, o.Callers)
			for c := range o.Callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					samples[ri][c] = fetch(ctx, ri, users[c%len(users)])
				}()
			}
		}
		close(start)
		wg.Wait()
		for ri := range samples {
			for _, s := range samples[ri] {
				res.BurstRequests++
				if s.code != "" {
					res.BurstErrors++
					continue
				}
				burstLat = append(burstLat, s.ms)
			}
		}
	}
	for range o.Rounds {
		// Wait for the token to expire: this is the herd's moment.
		if d := time.Until(expiry) + 20*time.Millisecond; d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			}
		}
		samples := make([][]sample, len(replicas))
		start := make(chan struct{})
		var wg sync.WaitGroup
		killed := -1
		if o.KillHolder {
			armed.Store(true)
		}
		firstRefresh.Store(nil)
		for ri := range replicas {
			samples[ri] = make([]sample, o.Callers)
			for c := range o.Callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					samples[ri][c] = fetch(ctx, ri, users[c%len(users)])
				}()
			}
		}
		roundStart := time.Now()
		close(start)
		if o.KillHolder {
			if killed, err = killHolder(ctx, tokenRequest, dbURL, users[0], replicas); err != nil {
				return nil, err
			}
			res.KilledReplica = replicas[killed].Name
		}
		wg.Wait()
		tokensPerLink := make([]map[string]bool, len(users))
		for i := range tokensPerLink {
			tokensPerLink[i] = map[string]bool{}
		}
		var counts []int
		var roundLat []float64
		for ri := range samples {
			if ri == killed {
				res.KilledCallers += len(samples[ri])
				continue
			}
			for c, s := range samples[ri] {
				res.CallerRequests++
				lat = append(lat, s.ms)
				roundLat = append(roundLat, s.ms)
				if killed >= 0 {
					// Every other caller ends with a definite answer: a
					// token or a typed error, never a lost connection.
					res.TakeoverWaitMS = max(res.TakeoverWaitMS, s.ms)
				}
				if s.code != "" {
					res.CallerErrors++
					res.ErrorCodes[s.code]++
					continue
				}
				u := c % len(users)
				tokensPerLink[u][s.token] = true
				lastToken[users[u]] = s.token
				if s.exp.After(expiry) {
					expiry = s.exp
				}
			}
		}
		for _, m := range tokensPerLink {
			counts = append(counts, len(m))
			res.DistinctTokensMax = max(res.DistinctTokensMax, len(m))
		}
		res.RoundTokens = append(res.RoundTokens, counts)
		if at := firstRefresh.Load(); at != nil {
			to := float64(at.Sub(roundStart).Microseconds()) / 1000
			toProvider = append(toProvider, to)
			afterProvider = append(afterProvider, summarize(roundLat).P99-to-res.ProviderLatencyMS)
		}
		if res.CallerErrors > 0 && expiry.Before(time.Now()) {
			// No caller got a fresh token: wait one TTL for the next round.
			expiry = time.Now().Add(o.TokenTTL)
		}
		// The same callers on the fresh token, well before it expires.
		if !o.KillHolder && time.Until(expiry) > o.TokenTTL/4 {
			burst()
		}
	}
	res.BurstLatencyMS = summarize(burstLat)
	res.ToProviderMS = summarize(toProvider)
	res.AfterProviderMS = summarize(afterProvider)
	after := idp.Stats()
	if !o.KillHolder {
		callsAfter, err := scrapeProviderCalls(ctx, replicas)
		if err != nil {
			return nil, err
		}
		if n := callsAfter[1] - callsBefore[1]; n > 0 {
			res.ProviderCallMS = (callsAfter[0] - callsBefore[0]) / n * 1000
		}
	}
	if res.LostRefreshes, err = scrapeAll(ctx, replicas, "tokenbroker_refresh_lost_total"); err != nil {
		return nil, err
	}
	if res.KilledReplica != "" {
		// The survivors answer for the links now.
		admin = client.New(replicas[(slices.IndexFunc(replicas, func(r *Replica) bool { return r.Name == res.KilledReplica })+1)%len(replicas)].URL, apiKey)
	}
	res.ProviderRefreshCalls = after.RefreshCalls - before.RefreshCalls
	res.ReuseDetections = after.ReuseDetections - before.ReuseDetections
	res.LatencyMS = summarize(lat)
	if len(burstLat) > 0 {
		res.CoordinationMS = res.LatencyMS.P99 - res.ProviderLatencyMS - res.BurstLatencyMS.P99
		if res.ProviderCallMS > 0 {
			res.CoordinationBeyondCallMS = res.LatencyMS.P99 - res.ProviderCallMS - res.BurstLatencyMS.P99
		}
	}

	// A link is broken if the broker marked it, or if the provider no
	// longer honours the token the broker hands out (its family was revoked
	// by reuse detection).
	for _, u := range users {
		l, err := admin.Link(ctx, u, "bench")
		if err != nil || l.State != string(tokenbroker.LinkActive) {
			res.LinksBroken++
			continue
		}
		if fam, ok := idp.FamilyOf(lastToken[u]); !ok || fam.Revoked {
			res.LinksBroken++
		}
	}
	return res, nil
}

// killHolder waits for the round's first token request to reach the
// provider, finds the replica holding user's lease on the database, and
// SIGKILLs it while its call is in flight. It returns the replica's index.
func killHolder(ctx context.Context, tokenRequest <-chan struct{}, dbURL, user string, replicas []*Replica) (int, error) {
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case <-tokenRequest:
	case <-t.C:
		return -1, errors.New("kill-holder: no refresh reached the provider within 30s")
	case <-ctx.Done():
		return -1, ctx.Err()
	}
	st, err := postgres.Open(ctx, dbURL)
	if err != nil {
		return -1, err
	}
	defer st.Close()
	l, err := st.GetLink(ctx, user, "bench")
	if err != nil {
		return -1, err
	}
	var i int
	if _, err := fmt.Sscanf(l.LeaseOwner, "r%d", &i); err != nil || i < 0 || i >= len(replicas) {
		return -1, fmt.Errorf("kill-holder: the lease holder %q is not one of the replicas", l.LeaseOwner)
	}
	replicas[i].Kill()
	return i, nil
}

// scrapeProviderCalls returns the sum (seconds) and count of the
// replicas' provider call latency histograms.
func scrapeProviderCalls(ctx context.Context, replicas []*Replica) ([2]float64, error) {
	var out [2]float64
	for i, suffix := range []string{"_sum", "_count"} {
		v, err := scrapeAll(ctx, replicas, refresh.ProviderLatencyMetric+suffix)
		if err != nil {
			return out, err
		}
		out[i] = v
	}
	return out, nil
}

// scrapeCounter sums the samples of a Prometheus counter at url.
func scrapeCounter(ctx context.Context, url, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
			sum += v
		}
	}
	return sum, nil
}

// ReplicaEnv is the environment of replicas serving provider "bench" (kind
// oauth2, no refresh-ahead) against idp, on dbURL (empty: SQLite in
// dataDir), with the encryption key key, and no background refresher.
func ReplicaEnv(idp *fakeidp.Server, key, dbURL, dataDir string) []string {
	ep := idp.Endpoints()
	return []string{
		"TOKENBROKER_ENCRYPTION_KEYS=" + key,
		"TOKENBROKER_DATABASE_URL=" + dbURL,
		"TOKENBROKER_DATA_DIR=" + dataDir,
		"TOKENBROKER_PROVIDER_BENCH_KIND=oauth2",
		"TOKENBROKER_PROVIDER_BENCH_CLIENT_ID=" + fakeidp.DefaultClientID,
		"TOKENBROKER_PROVIDER_BENCH_CLIENT_SECRET=" + fakeidp.DefaultClientSecret,
		"TOKENBROKER_PROVIDER_BENCH_AUTH_URL=" + ep.Authorize,
		"TOKENBROKER_PROVIDER_BENCH_TOKEN_URL=" + ep.Token,
		"TOKENBROKER_PROVIDER_BENCH_DEVICE_URL=" + ep.DeviceAuthorization,
		"TOKENBROKER_PROVIDER_BENCH_VALIDATE_URL=" + ep.Userinfo,
		"TOKENBROKER_PROVIDER_BENCH_REVOKE_URL=" + ep.Revoke,
		"TOKENBROKER_PROVIDER_BENCH_REFRESH_AHEAD=0s",
		// The herd measures callers meeting an expired token, which the
		// background refresher would otherwise have refreshed before
		// them; tests of the refresher turn it back on.
		"TOKENBROKER_BACKGROUND_REFRESH=false",
	}
}

func summarize(ms []float64) LatencySummary {
	if len(ms) == 0 {
		return LatencySummary{}
	}
	slices.Sort(ms)
	q := func(p float64) float64 { return ms[min(len(ms)-1, int(p*float64(len(ms))))] }
	return LatencySummary{P50: q(0.50), P99: q(0.99), Max: ms[len(ms)-1]}
}

// Setup migrates the database of env with exe, then creates an admin API
// key on it directly (`tokenbroker apikeys create`) and returns the key.
func Setup(ctx context.Context, exe string, env []string) (string, error) {
	if out, err := Command(ctx, exe, env, "migrate").CombinedOutput(); err != nil {
		return "", fmt.Errorf("migrate: %v: %s", err, out)
	}
	cmd := Command(ctx, exe, env, "apikeys", "create", "--name", "bench", "--scopes", tokenbroker.ScopeAdmin, "--json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("apikeys create: %v: %s", err, stderr.String())
	}
	var created struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(out, &created); err != nil || created.Key == "" {
		return "", fmt.Errorf("apikeys create printed no key (%v)", err)
	}
	return created.Key, nil
}
