package web_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/crypt"
	"github.com/tokenbroker/tokenbroker/docs"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/httpapi"
	"github.com/tokenbroker/tokenbroker/internal/testdb"
	"github.com/tokenbroker/tokenbroker/refresh"
	"github.com/tokenbroker/tokenbroker/web"
)

// consoleEnv is the whole broker as serve wires it (API, connect pages,
// console, refresh coordinator) on loopback, on a real SQLite store
// sealed by a real key ring, with a real fakeidp as provider "demo". The
// audit trail is written synchronously, so a page shows an event as soon
// as its action returns.
type consoleEnv struct {
	tb      testing.TB
	store   tokenbroker.Store
	idp     *fakeidp.Server
	api     *httpapi.Server
	tokens  *refresh.Coordinator
	console *web.Console
	srv     *httptest.Server
	logs    *logBuffer
}

type consoleOptions struct {
	limiter *web.SignInLimiter
	now     func() time.Time
	idle    time.Duration
}

func mustStartConsole(tb testing.TB, o consoleOptions) *consoleEnv {
	tb.Helper()
	sq := testdb.SQLite(tb)
	key, err := crypt.GenerateKey(nil)
	if err != nil {
		tb.Fatal(err)
	}
	ring, err := crypt.ParseKeys(key)
	if err != nil {
		tb.Fatal(err)
	}
	e := &consoleEnv{tb: tb, store: crypt.NewStore(sq, ring), logs: &logBuffer{}}
	e.idp = mustStartIdP(tb, fakeidp.Config{AutoApprove: "alice"})
	ln, base := mustListen(tb)
	providers := mustDemoProvider(tb, e.idp, e.idp.Endpoints().Userinfo)
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	auditor := tokenbroker.AuditorFunc(func(ev tokenbroker.AuditEvent) {
		if err := e.store.AppendAudit(context.Background(), []tokenbroker.AuditEvent{ev}); err != nil {
			tb.Errorf("audit: %v", err)
		}
	})
	e.tokens, err = refresh.New(refresh.Config{Store: e.store, Signaler: sq, Providers: providers, Auditor: auditor,
		Logger: log, Owner: "test-replica"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.tokens.Close)
	e.api = httpapi.New(httpapi.Config{Store: e.store, Tokens: e.tokens, Providers: providers, Auditor: auditor,
		BaseURL: base, Logger: log})
	pages, err := web.New(web.Config{Store: e.store, Providers: providers, Auditor: auditor, BaseURL: base, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	e.console, err = web.NewConsole(web.ConsoleConfig{Store: e.store, Providers: providers, Backend: e.api,
		Auditor: auditor, BaseURL: base, Logger: log, Docs: docs.FS, Version: "test",
		SignInLimiter: o.limiter, Now: o.now, IdleTimeout: o.idle})
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", e.console)
	mux.Handle("/admin", e.console)
	mux.Handle("/admin/", e.console)
	mux.Handle("/docs/", e.console)
	mux.Handle("/connect/", pages)
	mux.Handle("/oauth/", pages)
	mux.Handle("/", e.api)
	e.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: mux}}
	e.srv.Start()
	tb.Cleanup(e.srv.Close)
	return e
}

// mustKey creates an API key and returns its plaintext.
func (e *consoleEnv) mustKey(name string, scopes, users []string) (string, *tokenbroker.APIKey) {
	e.tb.Helper()
	k, plain, err := e.api.CreateKey(context.Background(), name, scopes, users, nil)
	if err != nil {
		e.tb.Fatalf("create key: %v", err)
	}
	return plain, k
}

// mustLink gives user a real grant at fakeidp (as alice) and stores it as
// the user's demo link, expired if expired is set.
func (e *consoleEnv) mustLink(user string, expired bool) *tokenbroker.Link {
	e.tb.Helper()
	tok, err := e.idp.IssueToken("alice", "read")
	if err != nil {
		e.tb.Fatal(err)
	}
	exp := tok.Expiry
	if expired {
		exp = time.Now().Add(-time.Minute)
	}
	l, err := e.store.PutLink(context.Background(), &tokenbroker.Link{UserID: user, ProviderID: "demo",
		AccountID: "1", AccountLogin: "alice", Token: tokenbroker.Token{AccessToken: tok.AccessToken,
			TokenType: "Bearer", RefreshToken: tok.RefreshToken, Expiry: exp, Scopes: []string{"read"}}}, tokenbroker.Record{})
	if err != nil {
		e.tb.Fatal(err)
	}
	return l
}

// mustBreak revokes the user's grant at fakeidp and asks for a token, so
// the coordinator meets the provider's invalid_grant and marks the link.
func (e *consoleEnv) mustBreak(user string) {
	e.tb.Helper()
	l, err := e.store.GetLink(context.Background(), user, "demo")
	if err != nil {
		e.tb.Fatal(err)
	}
	if !e.idp.RevokeFamilyOf(l.Token.RefreshToken) {
		e.tb.Fatal("fakeidp does not know the link's refresh token")
	}
	_, err = e.tokens.Token(context.Background(), "demo", user, 0)
	if tokenbroker.ErrorCode(err) != tokenbroker.EREAUTHREQUIRED {
		e.tb.Fatalf("Token after revocation: %v; want reauth_required", err)
	}
}
