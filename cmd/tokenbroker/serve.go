package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apikey"
	"github.com/tokenbroker/tokenbroker/audit"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/crypt"
	"github.com/tokenbroker/tokenbroker/docs"
	"github.com/tokenbroker/tokenbroker/httpapi"
	"github.com/tokenbroker/tokenbroker/identity"
	"github.com/tokenbroker/tokenbroker/internal/tracing"
	"github.com/tokenbroker/tokenbroker/provider"
	"github.com/tokenbroker/tokenbroker/refresh"
	"github.com/tokenbroker/tokenbroker/web"
	"github.com/tokenbroker/tokenbroker/webhook"
)

func init() { commands = append(commands, newServeCmd) }

func newServeCmd() *cobra.Command {
	cfg := &serveConfig{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the token API and the connect pages",
		Long: `serve runs tokenbroker. With no flags it uses the embedded default: a SQLite
database in ./tokenbroker-data (created if missing), listening on 127.0.0.1:8080.
--database-url postgres://... selects PostgreSQL, where any number of replicas
can serve together. Migrations are applied at start.`,
		Example: `  tokenbroker serve --config tokenbroker.yaml
  TOKENBROKER_DATABASE_URL=postgres://tb@db/tokenbroker TOKENBROKER_ENCRYPTION_KEYS=... tokenbroker serve --addr 0.0.0.0:8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cfg.Validate(); err != nil {
				return exitf(2, "%v", err)
			}
			return serveWith(cmd.Context(), cfg, cmd.OutOrStdout(), cmd.ErrOrStderr(), appOptions{banner: true})
		},
	}
	bindServeFlags(cmd.Flags(), cfg, getenvFrom)
	return cmd
}

// app is a wired tokenbroker: store, ring, providers, coordinator, HTTP.
type app struct {
	cfg    *serveConfig
	log    *slog.Logger
	handle storeHandle
	store  tokenbroker.Store // sealed
	tokens tokenbroker.TokenService
	// refresher is the background refresher; nil when it is off.
	refresher *refresh.Refresher
	audit     *audit.Batcher
	handler   http.Handler
	registry  *prometheus.Registry
	// tracer is the process's tracer provider: a no-op one unless an
	// OTLP endpoint is configured.
	tracer trace.TracerProvider
	// metrics serves /metrics: on the main mux, or on --metrics-addr.
	metrics http.Handler
	// metricsURL is where /metrics is served when --metrics-addr is set.
	metricsURL string
	closers    []func()
}

// appOptions are what the other commands that serve (dev, bench replica,
// bench hotpath) add to serve's wiring; serve itself sets none.
type appOptions struct {
	// extra adds providers on top of the configured ones (dev's
	// in-process demo provider).
	extra func(ctx context.Context, cfg *provider.Config) error
	// tokens, if set, replaces the refresh coordinator (the bench
	// replica's baselines).
	tokens func(tokenbroker.Store, tokenbroker.Providers) (tokenbroker.TokenService, error)
	// onStart, if set, runs once the server listens.
	onStart func(context.Context, *app) error
	// banner prints the URLs and the first-key hint (printBanner) once
	// the server listens.
	banner bool
}

// listeningPrefix starts the line serve prints on stdout once it listens,
// followed by its URL; internal/bench (bench.ListeningPrefix) waits for it.
const listeningPrefix = "tokenbroker listening on "

// configureRefresh is nil in the binary. This package's tests set it in a
// re-executed test binary (main_test.go) to inject faults into a serve
// process's coordinator; no flag or environment variable reaches it.
var configureRefresh func(*refresh.Config, *slog.Logger)

// buildApp opens and wires everything serve needs. The caller closes it.
func buildApp(ctx context.Context, cfg *serveConfig, log *slog.Logger, opts appOptions) (*app, error) {
	a := &app{cfg: cfg, log: log}
	h, err := openStore(ctx, cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	a.handle = h
	if ph, isPG := h.(postgresHandle); isPG {
		// The listener's reconnection warnings go through the configured
		// handler, like every other line.
		ph.s.Logger = log.With("component", "postgres")
	}
	ok := false
	defer func() {
		if !ok {
			// Whatever started before the failure stops: the audit
			// batcher's goroutine, the coordinator's change feed, the store.
			a.Close()
		}
	}()
	if err := h.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("migrate database: %w", err)
	}
	ring, err := loadServeRing(ctx, h, cfg.KeyFile, cfg.DataDir, log)
	if err != nil {
		return nil, err
	}
	a.store = crypt.NewStore(h.Store(), ring)

	file := &config.File{}
	if cfg.ProvidersFile != "" {
		if file, err = config.Load(cfg.ProvidersFile, os.Environ()); err != nil {
			return nil, err
		}
	} else if err := file.Providers.ApplyEnv(os.Environ()); err != nil {
		return nil, err
	}
	pcfg := &file.Providers
	if opts.extra != nil {
		if err := opts.extra(ctx, pcfg); err != nil {
			return nil, err
		}
	}
	if err := file.Validate(); err != nil {
		return nil, err
	}
	// Traces: exported by OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set, off
	// otherwise (package internal/tracing keeps secrets out of them).
	tp, traced, shutdownTracing, err := tracing.Setup(ctx, os.Getenv, version(), cfg.ReplicaID)
	if err != nil {
		return nil, err
	}
	a.tracer = tp
	defer func() {
		// Last of the closers: everything that makes spans has stopped.
		a.closers = append(a.closers, func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := shutdownTracing(sctx); err != nil {
				log.Warn("flush traces", "err", err)
			}
		})
	}()
	popts := provider.Options{Logger: log}
	if traced {
		popts.HTTPClient = &http.Client{Timeout: 30 * time.Second, Transport: tracing.Transport(nil, tp)}
	}
	reg, err := provider.NewRegistry(ctx, pcfg, popts)
	if err != nil {
		return nil, err
	}
	if len(reg.List()) == 0 {
		log.Warn("no providers configured: set --config or TOKENBROKER_PROVIDER_<ID>_KIND (see docs/providers.md)")
	}

	a.registry = prometheus.NewRegistry()
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.registry.MustRegister(refresh.NewLinkStateCollector(h.Store(), log))
	a.audit = audit.NewBatcher(h.Store(), audit.Options{Logger: log})
	rm := refresh.NewMetrics(a.registry)

	if opts.tokens != nil {
		if a.tokens, err = opts.tokens(a.store, reg); err != nil {
			return nil, err
		}
	} else {
		rc := refresh.Config{
			Store: a.store, Signaler: h.Signaler(), Providers: reg, Auditor: a.audit, Logger: log,
			Owner: cfg.ReplicaID, LeaseTTL: cfg.LeaseTTL, Grace: cfg.LeaseGrace, ProviderTimeout: cfg.ProviderTimeout,
			DegradeAfter: cfg.DegradeAfter,
			Metrics:      rm, Tracer: tp.Tracer("github.com/tokenbroker/tokenbroker/refresh"),
		}
		if feed, ok := h.Signaler().(tokenbroker.ChangeFeed); ok && cfg.TokenCacheTTL > 0 {
			rc.Changes, rc.CacheTTL = feed, cfg.TokenCacheTTL
		}
		if configureRefresh != nil {
			configureRefresh(&rc, log)
		}
		co, err := refresh.New(rc)
		if err != nil {
			return nil, err
		}
		// Token requests are counted and mark their link used; the uses
		// are written in batches, off the token path.
		uses := refresh.NewUseRecorder(h.Store(), cfg.LastUsedInterval, nil, log)
		uses.Start()
		a.tokens = refresh.TrackUse(co, uses, rm)
		if cfg.BackgroundRefresh {
			idle := cfg.IdleAfter
			if idle == 0 {
				idle = -1 // never
			}
			a.refresher, err = refresh.NewRefresher(refresh.RefresherConfig{
				Coordinator: co, Store: a.store, Interval: cfg.RefreshInterval,
				Concurrency: cfg.RefreshConcurrency, IdleAfter: idle, Logger: log,
			})
			if err != nil {
				co.Close()
				uses.Close()
				return nil, err
			}
			a.refresher.Start()
		}
		// The refresher stops before the coordinator, whose Close waits
		// for the flights it started; the last uses are written after
		// the server stopped taking requests.
		a.closers = append(a.closers, func() {
			if a.refresher != nil {
				a.refresher.Close()
			}
			co.Close()
			uses.Close()
		})
	}

	var workloads httpapi.WorkloadVerifier
	if len(file.Identity.WorkloadIdentities) > 0 {
		v, err := identity.NewVerifier(&file.Identity, identity.Options{Logger: log})
		if err != nil {
			return nil, err
		}
		workloads = v
		log.Info("workload identities trusted", "entries", v.Len())
	}

	// Webhooks: every replica runs a dispatcher; the outbox's leases make
	// them share the work (package webhook). It runs even without
	// endpoints, to clear the events state changes write.
	endpoints, err := file.Webhooks.Endpoints()
	if err != nil {
		return nil, err
	}
	wopts := webhook.Options{
		Owner: cfg.ReplicaID, Concurrency: cfg.WebhookConcurrency, Timeout: cfg.WebhookTimeout,
		PollInterval: cfg.WebhookPollInterval, RetryWindow: cfg.WebhookRetryWindow, Logger: log,
		Metrics: webhook.NewMetrics(a.registry, a.store, log),
	}
	if traced {
		wopts.Client = webhook.NewClient(tracing.Transport(nil, tp))
	}
	hooks, err := webhook.New(a.store, endpoints, wopts)
	if err != nil {
		return nil, err
	}
	hooks.Start()
	a.closers = append(a.closers, hooks.Close)

	baseURL := cfg.BaseURL
	reqLevel := slog.LevelDebug
	if cfg.LogRequests {
		reqLevel = slog.LevelInfo
	}
	api := httpapi.New(httpapi.Config{
		Store: a.store, Tokens: a.tokens, Providers: reg, Auditor: a.audit,
		BaseURL: baseURL, ReturnURLAllowList: cfg.ReturnURLAllow, Logger: log,
		RequestLogLevel: reqLevel,
		Workloads:       workloads, Metrics: httpapi.NewMetrics(a.registry),
	})
	a.registry.MustRegister(a.audit.Collector())
	if cfg.AuditRetention > 0 {
		// Every replica runs one; the job lease lets one at a time prune.
		pruner, err := audit.NewPruner(h.Store(), audit.PrunerOptions{Retention: cfg.AuditRetention, Owner: cfg.ReplicaID, Logger: log})
		if err != nil {
			return nil, err
		}
		a.registry.MustRegister(pruner.Collector())
		pruner.Start()
		a.closers = append(a.closers, pruner.Close)
	}
	// Replicas behind one load balancer must share the connect pages'
	// cookie key; deriving it from the shared key ring needs no new secret.
	cookieKey, err := ring.DeriveKey("tokenbroker web cookie v1")
	if err != nil {
		return nil, err
	}
	pages, err := web.New(web.Config{
		Store: a.store, Providers: reg, Auditor: a.audit, BaseURL: baseURL,
		ReturnURLAllowList: cfg.ReturnURLAllow, Logger: log, CookieKey: cookieKey,
	})
	if err != nil {
		return nil, err
	}
	consoleKey, err := ring.DeriveKey("tokenbroker web console v1")
	if err != nil {
		return nil, err
	}
	// The overview reads one histogram, from a registry of its own:
	// gathering a.registry would also count the links in the database and
	// read /proc on every page view.
	latency := prometheus.NewRegistry()
	latency.MustRegister(rm.LatencyCollector())
	console, err := web.NewConsole(web.ConsoleConfig{
		Store: a.store, Providers: reg, Backend: api, Auditor: a.audit, BaseURL: baseURL,
		CookieKey: consoleKey, Logger: log, Docs: docs.FS, Version: version(),
		Status: runtimeStatus(latency, a.refresher),
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", console)
	mux.Handle("/admin", console)
	mux.Handle("/admin/", console)
	mux.Handle("/docs/", console)
	mux.Handle("/connect/", pages)
	mux.Handle("/oauth/", pages)
	a.metrics = noSniff(promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{}))
	if cfg.MetricsAddr == "" {
		mux.Handle("/metrics", a.metrics)
	}
	mux.Handle("/", api)
	a.handler = mux
	if traced {
		a.handler = tracing.Handler(mux, tp)
	}
	ok = true
	return a, nil
}

// noSniff sets X-Content-Type-Options: nosniff on h's answers, as the
// API and the pages set it on theirs.
func noSniff(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// createKey makes an API key with apikey.New (the checks the API and
// `apikeys create` apply) and stores it. It returns the plaintext, to be
// shown once, and the stored key.
func createKey(ctx context.Context, st tokenbroker.APIKeyStore, name string, scopes ...string) (string, *tokenbroker.APIKey, error) {
	k, plain, err := apikey.New(nil, name, scopes, nil, nil)
	if err != nil {
		return "", nil, err
	}
	if _, err := st.CreateAPIKey(ctx, k); err != nil {
		return "", nil, err
	}
	return plain, k, nil
}

// Close flushes the audit trail and closes the store.
func (a *app) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range a.closers {
		c()
	}
	if a.audit != nil {
		if err := a.audit.Close(ctx); err != nil {
			a.log.Warn("flush audit trail", "err", err)
		}
	}
	a.handle.Close()
}

// serveWith runs until ctx ends, wired as opts says.
func serveWith(ctx context.Context, cfg *serveConfig, stdout, stderr io.Writer, opts appOptions) error {
	log := newLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return exitf(1, "listen on %s: %v", cfg.Addr, err)
	}
	defer ln.Close()
	if cfg.BaseURL == "" {
		cfg.BaseURL = "http://" + ln.Addr().String()
	}
	a, err := buildApp(ctx, cfg, log, opts)
	if err != nil {
		return exitf(1, "%s", oneLine(err))
	}
	defer a.Close()
	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	if cfg.MetricsAddr != "" {
		// Scrapes on their own address, so the public listener need not
		// expose them.
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			_ = srv.Close()
			return exitf(1, "listen on %s (--metrics-addr): %v", cfg.MetricsAddr, err)
		}
		mmux := http.NewServeMux()
		mmux.Handle("GET /metrics", a.metrics)
		msrv := &http.Server{Handler: mmux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: srv.ErrorLog}
		go func() { errc <- msrv.Serve(mln) }()
		defer msrv.Close()
		a.metricsURL = "http://" + mln.Addr().String() + "/metrics"
		log.Info("metrics on their own listener", "url", a.metricsURL)
	}
	log.Info("tokenbroker started", "addr", ln.Addr().String(), "base_url", cfg.BaseURL, "store", a.handle.Kind(), "replica", cfg.ReplicaID)
	fmt.Fprintf(stdout, "%s%s\n", listeningPrefix, "http://"+ln.Addr().String())
	if opts.banner {
		printBanner(ctx, stdout, a)
	}
	if opts.onStart != nil {
		if err := opts.onStart(ctx, a); err != nil {
			_ = srv.Close()
			return exitf(1, "%s", oneLine(err))
		}
	}

	select {
	case err := <-errc:
		return exitf(1, "http server: %v", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutdown", "err", err)
	}
	return nil
}

// oneLine makes an error fit one line.
func oneLine(err error) string {
	s := err.Error()
	for i, r := range s {
		if r == '\n' {
			return s[:i]
		}
	}
	return s
}
