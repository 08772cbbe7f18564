package httpapitest

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apikey"
	"github.com/tokenbroker/tokenbroker/audit"
	"github.com/tokenbroker/tokenbroker/crypt"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/httpapi"
	"github.com/tokenbroker/tokenbroker/identity"
	"github.com/tokenbroker/tokenbroker/internal/idptest"
	"github.com/tokenbroker/tokenbroker/internal/testclock"
	"github.com/tokenbroker/tokenbroker/provider"
	"github.com/tokenbroker/tokenbroker/refresh"
	"github.com/tokenbroker/tokenbroker/store/sqlite"
	"github.com/tokenbroker/tokenbroker/web"
)

// Provider ids of an [Env].
const (
	// ProviderDemo is a full oauth2 provider on the fake identity provider:
	// refresh, device flow, validation (userinfo) and RFC 7009 revocation.
	ProviderDemo = "demo"
	// ProviderBare is the same identity provider configured with only the
	// authorization and token endpoints: no device flow, no validation, no
	// revocation.
	ProviderBare = "bare"
)

// Clock is a settable clock, safe for concurrent use.
type Clock = testclock.Clock

// NewClock returns a clock reading t.
func NewClock(t time.Time) *Clock { return testclock.New(t) }

// Options configure [MustStart].
type Options struct {
	// ReturnURLAllowList is the API's return URL allow-list.
	ReturnURLAllowList []string
	// IDP configures the fake identity provider; Now and Logger are set by
	// MustStart.
	IDP fakeidp.Config
	// Rand is the API's source of ids and keys; default crypto/rand.
	Rand io.Reader
	// Tokens replaces the refresh coordinator (to inject faults).
	Tokens func(coordinator tokenbroker.TokenService) tokenbroker.TokenService
	// Logs receives every log line of the API, the coordinator, the
	// auditor and the providers; default a new capture.
	Logs *LogCapture
	// Trusts, if set, returns the workload identity trust entries given
	// the fake identity provider's issuer URL; OIDC is then turned on at
	// the identity provider so it can mint workload JWTs
	// ([Env.MintWorkloadJWT]).
	Trusts func(issuer string) []identity.Trust
	// DemoHosts is the hosts expression of [ProviderDemo] (default none),
	// for clients that pick the provider by host (git-credential).
	DemoHosts string
	// TokenCacheTTL, if positive, turns on the coordinator's token cache
	// (fed by the store's change feed), as serve does by default.
	TokenCacheTTL time.Duration
}

// Env is a complete, real tokenbroker API on loopback: a migrated SQLite
// store sealed by package crypt, the fake identity provider, real
// providers on it, the refresh coordinator, the batching auditor, the API
// server and the connect pages (package web) mounted as `tokenbroker
// serve` mounts them, plus an admin key.
type Env struct {
	Clock *Clock
	IDP   *fakeidp.Server
	// Store is the SQLite store below the sealing layer: what is at rest,
	// for inspection. Sealed decorates it with package crypt, as in
	// production; the API and the coordinator use Sealed.
	Store     *sqlite.Store
	Sealed    tokenbroker.Store
	Providers tokenbroker.Providers
	Tokens    tokenbroker.TokenService
	Auditor   *audit.Batcher
	// Workloads verifies workload JWTs (nil without Options.Trusts).
	Workloads *identity.Verifier
	// Metrics is the registry of the API's metrics.
	Metrics *prometheus.Registry
	API     *httpapi.Server
	Server  *httptest.Server
	URL     string
	Logs    *LogCapture
	// AdminKey is an unrestricted admin key.
	AdminKey string

	closers []func()
}

// MustStart starts an Env closed at tb's cleanup.
func MustStart(tb testing.TB, opts Options) *Env {
	tb.Helper()
	e, err := Start(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.Close)
	return e
}

// Start starts an Env without a testing.TB (for Example functions run from
// a TestMain). The caller must call [Env.Close].
func Start(opts Options) (env *Env, err error) {
	ctx := context.Background()
	e := &Env{Clock: NewClock(time.Now().UTC().Truncate(time.Second)), Logs: opts.Logs}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if e.Logs == nil {
		e.Logs = NewLogCapture()
	}
	log := e.Logs.Logger()

	idpCfg := opts.IDP
	if opts.Trusts != nil {
		idpCfg.OIDC = true
	}
	idpCfg.Now = e.Clock.Now
	idpCfg.Logger = log.With("component", "fakeidp")
	e.IDP, err = fakeidp.Start(idpCfg)
	if err != nil {
		return nil, fmt.Errorf("start fakeidp: %w", err)
	}
	e.closers = append(e.closers, e.IDP.Close)

	dir, err := os.MkdirTemp("", "httpapitest-*")
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { os.RemoveAll(dir) })
	e.Store, err = sqlite.Open(ctx, filepath.Join(dir, "tokenbroker.db"))
	if err != nil {
		return nil, fmt.Errorf("open SQLite: %w", err)
	}
	e.closers = append(e.closers, func() { e.Store.Close() })
	if err := e.Store.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("migrate SQLite: %w", err)
	}
	key := make([]byte, 32)
	if _, err := io.ReadFull(rand.Reader, key); err != nil {
		return nil, err
	}
	ring, err := crypt.NewRing(nil, key)
	if err != nil {
		return nil, err
	}
	e.Sealed = crypt.NewStore(e.Store, ring)

	demo := idptest.OAuth2(e.IDP, ProviderDemo)
	demo.DisplayName, demo.Scopes, demo.Hosts = "Demo", []string{"read"}, opts.DemoHosts
	bare := idptest.OAuth2(e.IDP, ProviderBare) // authorize and token only
	bare.DisplayName, bare.DeviceURL, bare.ValidateURL, bare.RevokeURL = "Bare", "", "", ""
	pcfg := &provider.Config{Providers: []provider.ProviderConfig{demo, bare}}
	if err := pcfg.Validate(); err != nil {
		return nil, fmt.Errorf("provider config: %w", err)
	}
	reg, err := provider.NewRegistry(ctx, pcfg, provider.Options{Logger: log.With("component", "provider"), Now: e.Clock.Now})
	if err != nil {
		return nil, fmt.Errorf("providers: %w", err)
	}
	e.Providers = reg

	e.Auditor = audit.NewBatcher(e.Store, audit.Options{Logger: log, FlushInterval: 50 * time.Millisecond})
	// Closers run in reverse: the auditor flushes before the store closes.
	e.closers = append(e.closers, func() { e.Auditor.Close(context.Background()) })

	co, err := refresh.New(refresh.Config{
		Store: e.Sealed, Signaler: e.Store, Providers: reg, Auditor: e.Auditor,
		Logger: log, Owner: "test", Clock: e.Clock,
		RetryBackoff: time.Millisecond, RetryBackoffMax: 5 * time.Millisecond,
		UncertainBackoff: time.Millisecond, UncertainBackoffMax: 5 * time.Millisecond,
		Changes: e.Store, CacheTTL: opts.TokenCacheTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("refresh coordinator: %w", err)
	}
	e.Tokens = co
	if opts.Tokens != nil {
		e.Tokens = opts.Tokens(co)
	}

	var workloads httpapi.WorkloadVerifier
	if opts.Trusts != nil {
		icfg := &identity.Config{WorkloadIdentities: opts.Trusts(e.IDP.URL())}
		if err := icfg.Validate([]string{ProviderDemo, ProviderBare}); err != nil {
			return nil, err
		}
		hc := &http.Client{Timeout: 10 * time.Second}
		e.closers = append(e.closers, hc.CloseIdleConnections)
		e.Workloads, err = identity.NewVerifier(icfg, identity.Options{HTTPClient: hc, Now: e.Clock.Now, Logger: log})
		if err != nil {
			return nil, err
		}
		workloads = e.Workloads
	}
	e.Metrics = prometheus.NewRegistry()

	e.Server = httptest.NewUnstartedServer(nil)
	e.URL = "http://" + e.Server.Listener.Addr().String()
	e.API = httpapi.New(httpapi.Config{
		Store: e.Sealed, Tokens: e.Tokens, Providers: reg, Auditor: e.Auditor,
		BaseURL: e.URL, ReturnURLAllowList: opts.ReturnURLAllowList,
		Logger: log, Now: e.Clock.Now, Rand: opts.Rand,
		Workloads: workloads, Metrics: httpapi.NewMetrics(e.Metrics),
	})
	pages, err := web.New(web.Config{
		Store: e.Sealed, Providers: reg, Auditor: e.Auditor, BaseURL: e.URL,
		ReturnURLAllowList: opts.ReturnURLAllowList, Logger: log.With("component", "web"),
		Now: e.Clock.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	// Mounted as `tokenbroker serve` mounts them.
	mux := http.NewServeMux()
	mux.Handle("/connect/", pages)
	mux.Handle("/oauth/", pages)
	mux.Handle("/", e.API)
	e.Server.Config.Handler = mux
	e.Server.Start()
	e.closers = append(e.closers, e.Server.Close)

	if e.AdminKey, err = e.NewKey("admin", []string{tokenbroker.ScopeAdmin}, nil, nil); err != nil {
		return nil, err
	}
	return e, nil
}

// Close stops the servers, flushes the auditor and removes the database.
// It is safe to call more than once.
func (e *Env) Close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
	e.closers = nil
}

// NewKey creates an API key directly in the store and returns its
// plaintext, registered as a secret with the log capture.
func (e *Env) NewKey(name string, scopes, users, providers []string) (string, error) {
	k, plaintext, err := apikey.New(nil, name, scopes, users, providers)
	if err != nil {
		return "", err
	}
	if _, err := e.Store.CreateAPIKey(context.Background(), k); err != nil {
		return "", err
	}
	e.Logs.AddSecret(plaintext, plaintext[len("tbk_")+apikey.PrefixLen+1:])
	return plaintext, nil
}

// MustKey is [Env.NewKey] failing tb on error.
func (e *Env) MustKey(tb testing.TB, name string, scopes, users, providers []string) string {
	tb.Helper()
	k, err := e.NewKey(name, scopes, users, providers)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// Link has the fake identity provider issue a token family for account
// (an id or login of its users) and stores it as userID's link to
// providerID, as a completed connect flow would. It returns the pair.
func (e *Env) Link(userID, providerID, account string) (*fakeidp.Token, error) {
	t, err := e.IDP.IssueToken(account, "read")
	if err != nil {
		return nil, err
	}
	e.Logs.AddSecret(t.AccessToken, t.RefreshToken)
	l := &tokenbroker.Link{
		UserID: userID, ProviderID: providerID, AccountID: t.UserID,
		Token: tokenbroker.Token{
			AccessToken: t.AccessToken, TokenType: "Bearer", RefreshToken: t.RefreshToken,
			Expiry: t.Expiry, IssuedAt: e.Clock.Now(), Scopes: []string{"read"},
		},
	}
	if _, err := e.Sealed.PutLink(context.Background(), l, tokenbroker.Record{}); err != nil {
		return nil, err
	}
	return t, nil
}

// MustLink is [Env.Link] failing tb on error.
func (e *Env) MustLink(tb testing.TB, userID, providerID, account string) *fakeidp.Token {
	tb.Helper()
	t, err := e.Link(userID, providerID, account)
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

// Do sends a request to the API with key (none when "") and returns the
// response with its body read.
func (e *Env) Do(tb testing.TB, method, path, key string, body string, header ...string) (*http.Response, []byte) {
	tb.Helper()
	return Do(tb, e.Server.Client(), method, e.URL+path, key, body, header...)
}

// MintWorkloadJWT has the fake identity provider mint a workload JWT
// (Options.Trusts must be set) and registers it as a secret with the log
// capture.
func (e *Env) MintWorkloadJWT(tb testing.TB, c fakeidp.WorkloadClaims) string {
	tb.Helper()
	raw, err := e.IDP.MintWorkloadJWT(c)
	if err != nil {
		tb.Fatal(err)
	}
	e.Logs.AddSecret(raw)
	return raw
}
