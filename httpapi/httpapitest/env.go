package httpapitest

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/audit"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/httpapi"
	"github.com/tokenbroker/tokenbroker/internal/testdb"
	"github.com/tokenbroker/tokenbroker/provider"
	"github.com/tokenbroker/tokenbroker/refresh"
	"github.com/tokenbroker/tokenbroker/store/sqlite"
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
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock reading t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

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
}

// Env is a complete, real tokenbroker API on loopback: a migrated SQLite
// store, the fake identity provider, real providers on it, the refresh
// coordinator, the batching auditor and the API server, plus an admin key.
type Env struct {
	Clock     *Clock
	IDP       *fakeidp.Server
	Store     *sqlite.Store
	Providers tokenbroker.Providers
	Tokens    tokenbroker.TokenService
	Auditor   *audit.Batcher
	API       *httpapi.Server
	Server    *httptest.Server
	URL       string
	Logs      *LogCapture
	// AdminKey is an unrestricted admin key.
	AdminKey string
}

// MustStart starts an Env closed at tb's cleanup.
func MustStart(tb testing.TB, opts Options) *Env {
	tb.Helper()
	ctx := context.Background()
	e := &Env{Clock: NewClock(time.Now().UTC().Truncate(time.Second)), Logs: opts.Logs}
	if e.Logs == nil {
		e.Logs = NewLogCapture()
	}
	log := e.Logs.Logger()

	idpCfg := opts.IDP
	idpCfg.Now = e.Clock.Now
	idpCfg.Logger = log.With("component", "fakeidp")
	idp, err := fakeidp.Start(idpCfg)
	if err != nil {
		tb.Fatalf("start fakeidp: %v", err)
	}
	tb.Cleanup(idp.Close)
	e.IDP = idp
	ep := idp.Endpoints()
	cfg := idp.Config()

	e.Store = testdb.SQLite(tb)
	pcfg := &provider.Config{Providers: []provider.ProviderConfig{
		{
			ID: ProviderDemo, Kind: provider.KindOAuth2, DisplayName: "Demo",
			ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
			AuthURL: ep.Authorize, TokenURL: ep.Token, DeviceURL: ep.DeviceAuthorization,
			ValidateURL: ep.Userinfo, RevokeURL: ep.Revoke,
			Scopes: []string{"read"},
		},
		{
			ID: ProviderBare, Kind: provider.KindOAuth2, DisplayName: "Bare",
			ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
			AuthURL: ep.Authorize, TokenURL: ep.Token,
		},
	}}
	if err := pcfg.Validate(); err != nil {
		tb.Fatalf("provider config: %v", err)
	}
	reg, err := provider.NewRegistry(ctx, pcfg, provider.Options{Logger: log.With("component", "provider"), Now: e.Clock.Now})
	if err != nil {
		tb.Fatalf("providers: %v", err)
	}
	e.Providers = reg

	e.Auditor = audit.NewBatcher(e.Store, audit.Options{Logger: log, FlushInterval: 50 * time.Millisecond})
	tb.Cleanup(func() { e.Auditor.Close(context.Background()) })

	co, err := refresh.New(refresh.Config{
		Store: e.Store, Signaler: e.Store, Providers: reg, Auditor: e.Auditor,
		Logger: log, Owner: "test", Now: e.Clock.Now,
		BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
	})
	if err != nil {
		tb.Fatalf("refresh coordinator: %v", err)
	}
	e.Tokens = co
	if opts.Tokens != nil {
		e.Tokens = opts.Tokens(co)
	}

	e.Server = httptest.NewUnstartedServer(nil)
	e.URL = "http://" + e.Server.Listener.Addr().String()
	e.API = httpapi.New(httpapi.Config{
		Store: e.Store, Tokens: e.Tokens, Providers: reg, Auditor: e.Auditor,
		BaseURL: e.URL, ReturnURLAllowList: opts.ReturnURLAllowList,
		Logger: log, Now: e.Clock.Now, Rand: opts.Rand,
	})
	e.Server.Config.Handler = e.API
	e.Server.Start()
	tb.Cleanup(e.Server.Close)

	e.AdminKey = e.MustKey(tb, "admin", []string{tokenbroker.ScopeAdmin}, nil, nil)
	return e
}

// MustKey creates an API key directly in the store and returns its
// plaintext, registered as a secret with the log capture.
func (e *Env) MustKey(tb testing.TB, name string, scopes, users, providers []string) string {
	tb.Helper()
	k, plaintext, err := httpapi.NewAPIKey(nil, name, scopes, users, providers)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := e.Store.CreateAPIKey(context.Background(), k); err != nil {
		tb.Fatal(err)
	}
	e.Logs.AddSecret(plaintext, plaintext[len("tbk_")+httpapi.APIKeyPrefixLen+1:])
	return plaintext
}

// MustLink has the fake identity provider issue a token family for
// account (an id or login of its users) and stores it as userID's link to
// providerID, as a completed connect flow would. It returns the pair.
func (e *Env) MustLink(tb testing.TB, userID, providerID, account string) *fakeidp.Token {
	tb.Helper()
	t, err := e.IDP.IssueToken(account, "read")
	if err != nil {
		tb.Fatal(err)
	}
	e.Logs.AddSecret(t.AccessToken, t.RefreshToken)
	l := &tokenbroker.Link{
		UserID: userID, ProviderID: providerID, AccountID: t.UserID,
		Token: tokenbroker.Token{
			AccessToken: t.AccessToken, TokenType: "Bearer", RefreshToken: t.RefreshToken,
			Expiry: t.Expiry, Scopes: []string{"read"},
		},
	}
	if _, err := e.Store.PutLink(context.Background(), l); err != nil {
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
