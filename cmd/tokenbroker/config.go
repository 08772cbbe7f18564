package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/audit"
	"github.com/tokenbroker/tokenbroker/internal/configfile"
	"github.com/tokenbroker/tokenbroker/internal/returnurl"
	"github.com/tokenbroker/tokenbroker/refresh"
	"github.com/tokenbroker/tokenbroker/webhook"
)

// serveConfig is the configuration of `tokenbroker serve` (and `dev`). Every
// field comes from a flag whose default is read from an environment
// variable; Validate checks it as a whole.
type serveConfig struct {
	Addr            string
	BaseURL         string
	DataDir         string
	DatabaseURL     string
	ProvidersFile   string
	KeyFile         string
	ReturnURLAllow  []string
	ReplicaID       string
	LeaseTTL        time.Duration
	LeaseGrace      time.Duration
	ProviderTimeout time.Duration
	TokenCacheTTL   time.Duration
	// DegradeAfter is how long a link's refreshes may fail transiently
	// before it is marked degraded.
	DegradeAfter time.Duration
	// AuditRetention is how long audit rows are kept (0: forever).
	AuditRetention time.Duration
	// The background refresher (refresh.Refresher): on unless
	// BackgroundRefresh is false.
	BackgroundRefresh  bool
	RefreshInterval    time.Duration
	RefreshConcurrency int
	IdleAfter          time.Duration
	// LastUsedInterval is how often each replica writes the links asked
	// for since its last write (refresh.UseRecorder).
	LastUsedInterval time.Duration
	LogRequests      bool
	LogFormat        string
	LogLevel         string
	// MetricsAddr, if set, serves /metrics on its own listener instead of
	// the main one.
	MetricsAddr string
	// Webhook delivery (package webhook).
	WebhookConcurrency  int
	WebhookTimeout      time.Duration
	WebhookPollInterval time.Duration
	WebhookRetryWindow  time.Duration

	// envErr holds the environment values that did not parse, each
	// naming its variable; Validate returns it first.
	envErr error
}

// envOr returns the environment variable's value, or def when unset.
func envOr(environ func(string) string, key, def string) string {
	if v := environ(key); v != "" {
		return v
	}
	return def
}

// envParse returns the value of the environment variable key as parse
// reads it, or def when unset. A value that does not parse is recorded in
// *errp, naming the variable and what it wants, and def is returned.
func envParse[T any](environ func(string) string, key string, def T, parse func(string) (T, error), want string, errp *error) T {
	v := environ(key)
	if v == "" {
		return def
	}
	x, err := parse(v)
	if err != nil {
		*errp = errors.Join(*errp, fmt.Errorf("invalid %s=%q: want %s", key, tokenbroker.Truncate(v, 40), want))
		return def
	}
	return x
}

// envDuration is envParse for a duration.
func envDuration(environ func(string) string, key string, def time.Duration, errp *error) time.Duration {
	return envParse(environ, key, def, time.ParseDuration, "a duration with a unit, such as 30s or 2m", errp)
}

// envInt is envParse for an integer.
func envInt(environ func(string) string, key string, def int, errp *error) int {
	return envParse(environ, key, def, strconv.Atoi, "an integer", errp)
}

// envBool is envParse for a boolean (true/false, 1/0), false when unset.
func envBool(environ func(string) string, key string, errp *error) bool {
	return envParse(environ, key, false, strconv.ParseBool, "true or false", errp)
}

// bindServeFlags declares the serve flags on fs with defaults taken from
// the environment (getenv), filling cfg when fs is parsed.
func bindServeFlags(fs *pflag.FlagSet, cfg *serveConfig, getenv func(string) string) {
	fs.StringVar(&cfg.Addr, "addr", envOr(getenv, "TOKENBROKER_ADDR", "127.0.0.1:8080"), "listen address (env TOKENBROKER_ADDR)")
	fs.StringVar(&cfg.BaseURL, "base-url", getenv("TOKENBROKER_BASE_URL"), "public URL of this service (env TOKENBROKER_BASE_URL; default http://<addr>)")
	bindDBFlags(fs, &cfg.DatabaseURL, &cfg.DataDir, getenv)
	bindConfigFlag(fs, &cfg.ProvidersFile, getenv)
	fs.StringVar(&cfg.KeyFile, "key-file", getenv("TOKENBROKER_ENCRYPTION_KEY_FILE"), "encryption key file (env TOKENBROKER_ENCRYPTION_KEY_FILE; or keys in TOKENBROKER_ENCRYPTION_KEYS)")
	fs.StringSliceVar(&cfg.ReturnURLAllow, "return-url-allow", configfile.SplitList(getenv("TOKENBROKER_RETURN_URL_ALLOW")), "URL prefixes connect sessions may return to (env TOKENBROKER_RETURN_URL_ALLOW, comma-separated)")
	fs.StringVar(&cfg.ReplicaID, "replica-id", getenv("TOKENBROKER_REPLICA_ID"), "lease owner id of this replica (env TOKENBROKER_REPLICA_ID; default host-pid-random)")
	fs.DurationVar(&cfg.LeaseTTL, "lease-ttl", envDuration(getenv, "TOKENBROKER_LEASE_TTL", refresh.DefaultLeaseTTL, &cfg.envErr), "refresh lease duration; the holder renews it every third of it, so a dead holder is taken over about this long (plus the grace) after its last renewal (env TOKENBROKER_LEASE_TTL)")
	fs.DurationVar(&cfg.LeaseGrace, "lease-grace", envDuration(getenv, "TOKENBROKER_LEASE_GRACE", refresh.DefaultGrace, &cfg.envErr), "how long an expired, unreleased lease stays protected after another replica first found it expired, so a live holder cut off from the database commits first when it returns (env TOKENBROKER_LEASE_GRACE)")
	fs.DurationVar(&cfg.ProviderTimeout, "provider-timeout", envDuration(getenv, "TOKENBROKER_PROVIDER_TIMEOUT", refresh.DefaultProviderTimeout, &cfg.envErr), "bound of one provider call; the lease is renewed meanwhile (env TOKENBROKER_PROVIDER_TIMEOUT)")
	fs.DurationVar(&cfg.TokenCacheTTL, "token-cache-ttl", envDuration(getenv, "TOKENBROKER_TOKEN_CACHE_TTL", time.Second, &cfg.envErr), "how long a replica may serve a fresh token from memory; changes invalidate it at once, this bounds it if notifications are lost; 0 disables (env TOKENBROKER_TOKEN_CACHE_TTL)")
	fs.DurationVar(&cfg.DegradeAfter, "degrade-after", envDuration(getenv, "TOKENBROKER_DEGRADE_AFTER", refresh.DefaultDegradeAfter, &cfg.envErr), "how long a link's refreshes may keep failing transiently before it is marked degraded (link.degraded) (env TOKENBROKER_DEGRADE_AFTER)")
	fs.DurationVar(&cfg.AuditRetention, "audit-retention", envDuration(getenv, "TOKENBROKER_AUDIT_RETENTION", audit.DefaultRetention, &cfg.envErr), "how long audit rows are kept; older ones are deleted in the background, by one replica at a time; 0 keeps them forever (env TOKENBROKER_AUDIT_RETENTION)")
	fs.BoolVar(&cfg.BackgroundRefresh, "background-refresh", envParse(getenv, "TOKENBROKER_BACKGROUND_REFRESH", true, strconv.ParseBool, "true or false", &cfg.envErr), "refresh links in the background before they expire, keep alive the grants of providers that expire unused ones, and let unused links go idle; every replica runs it, the refresh lease makes them cooperate (env TOKENBROKER_BACKGROUND_REFRESH)")
	fs.DurationVar(&cfg.RefreshInterval, "background-refresh-interval", envDuration(getenv, "TOKENBROKER_BACKGROUND_REFRESH_INTERVAL", refresh.DefaultRefresherInterval, &cfg.envErr), "pause between the background refresher's scans, with jitter (env TOKENBROKER_BACKGROUND_REFRESH_INTERVAL)")
	fs.IntVar(&cfg.RefreshConcurrency, "background-refresh-concurrency", envInt(getenv, "TOKENBROKER_BACKGROUND_REFRESH_CONCURRENCY", refresh.DefaultRefresherConcurrency, &cfg.envErr), "background refreshes in flight at once per replica (env TOKENBROKER_BACKGROUND_REFRESH_CONCURRENCY)")
	fs.DurationVar(&cfg.IdleAfter, "idle-after", envDuration(getenv, "TOKENBROKER_IDLE_AFTER", refresh.DefaultIdleAfter, &cfg.envErr), "a link nobody asked for in this long is marked idle: no longer refreshed in the background nor kept alive, left to expire; 0 never (env TOKENBROKER_IDLE_AFTER)")
	fs.DurationVar(&cfg.LastUsedInterval, "last-used-interval", envDuration(getenv, "TOKENBROKER_LAST_USED_INTERVAL", refresh.DefaultUseInterval, &cfg.envErr), "how often each replica writes which links were asked for (their last use, at most one write per link per interval) (env TOKENBROKER_LAST_USED_INTERVAL)")
	fs.BoolVar(&cfg.LogRequests, "log-requests", envBool(getenv, "TOKENBROKER_LOG_REQUESTS", &cfg.envErr), "log every API request at info level (default: debug level; errors are always logged) (env TOKENBROKER_LOG_REQUESTS=true)")
	fs.StringVar(&cfg.LogFormat, "log-format", envOr(getenv, "TOKENBROKER_LOG_FORMAT", "text"), "log format: text or json (env TOKENBROKER_LOG_FORMAT)")
	fs.StringVar(&cfg.LogLevel, "log-level", envOr(getenv, "TOKENBROKER_LOG_LEVEL", "info"), "log level: debug, info, warn, error (env TOKENBROKER_LOG_LEVEL)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", getenv("TOKENBROKER_METRICS_ADDR"), "serve /metrics on this address instead of --addr (env TOKENBROKER_METRICS_ADDR)")
	fs.IntVar(&cfg.WebhookConcurrency, "webhook-concurrency", envInt(getenv, "TOKENBROKER_WEBHOOK_CONCURRENCY", webhook.DefaultConcurrency, &cfg.envErr), "webhook deliveries in flight at once per replica (env TOKENBROKER_WEBHOOK_CONCURRENCY)")
	fs.DurationVar(&cfg.WebhookTimeout, "webhook-timeout", envDuration(getenv, "TOKENBROKER_WEBHOOK_TIMEOUT", webhook.DefaultTimeout, &cfg.envErr), "bound of one webhook delivery attempt (env TOKENBROKER_WEBHOOK_TIMEOUT)")
	fs.DurationVar(&cfg.WebhookPollInterval, "webhook-poll-interval", envDuration(getenv, "TOKENBROKER_WEBHOOK_POLL_INTERVAL", webhook.DefaultPollInterval, &cfg.envErr), "how often each replica looks for due webhook deliveries (env TOKENBROKER_WEBHOOK_POLL_INTERVAL)")
	fs.DurationVar(&cfg.WebhookRetryWindow, "webhook-retry-window", envDuration(getenv, "TOKENBROKER_WEBHOOK_RETRY_WINDOW", webhook.DefaultRetryWindow, &cfg.envErr), "how long a failing webhook delivery is retried before it becomes a dead letter (env TOKENBROKER_WEBHOOK_RETRY_WINDOW)")
}

// bindConfigFlag declares --config FILE, the configuration file (YAML:
// providers and the other sections of docs/providers.md), with its
// default from TOKENBROKER_CONFIG, for every command that reads it.
// --providers and TOKENBROKER_PROVIDERS_FILE are the older names, kept as
// aliases.
func bindConfigFlag(fs *pflag.FlagSet, file *string, getenv func(string) string) {
	def := envOr(getenv, "TOKENBROKER_CONFIG", getenv("TOKENBROKER_PROVIDERS_FILE"))
	fs.StringVar(file, "config", def, "configuration file, YAML (env TOKENBROKER_CONFIG); empty: environment only")
	fs.StringVar(file, "providers", def, "alias of --config")
	_ = fs.MarkHidden("providers")
}

// defaultServeConfig returns serve's defaults as its flags declare them,
// ignoring the environment, for in-process uses (bench hotpath, tests).
func defaultServeConfig() *serveConfig {
	cfg := &serveConfig{}
	bindServeFlags(pflag.NewFlagSet("serve", pflag.ContinueOnError), cfg, func(string) string { return "" })
	return cfg
}

// bindDBFlags declares --database-url and --data-dir, the database flags of
// every command that opens the store (serve, dev, migrate, keys, apikeys).
func bindDBFlags(fs *pflag.FlagSet, databaseURL, dataDir *string, getenv func(string) string) {
	fs.StringVar(databaseURL, "database-url", getenv("TOKENBROKER_DATABASE_URL"), "postgres://... for PostgreSQL (env TOKENBROKER_DATABASE_URL); empty: SQLite in the data dir")
	fs.StringVar(dataDir, "data-dir", envOr(getenv, "TOKENBROKER_DATA_DIR", "./tokenbroker-data"), "directory of the embedded SQLite database (env TOKENBROKER_DATA_DIR)")
}

// Validate checks the configuration and fills derived defaults.
func (c *serveConfig) Validate() error {
	if c.envErr != nil {
		return c.envErr
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("invalid --addr %q: want host:port", c.Addr)
	}
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("invalid --base-url %q: want http(s)://host[:port]", c.BaseURL)
		}
		c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	}
	if _, err := returnurl.Parse(c.ReturnURLAllow); err != nil {
		return fmt.Errorf("invalid --return-url-allow: %s", tokenbroker.ErrorMessage(err))
	}
	if c.LeaseTTL < time.Second {
		return fmt.Errorf("invalid --lease-ttl %s: must be at least 1s (it is renewed every third of it)", c.LeaseTTL)
	}
	if c.LeaseGrace <= refresh.DefaultCommitRetryInterval || c.LeaseGrace > c.LeaseTTL {
		return fmt.Errorf("invalid --lease-grace %s: must exceed the commit retry interval (%s) and not the lease TTL (%s)", c.LeaseGrace, refresh.DefaultCommitRetryInterval, c.LeaseTTL)
	}
	if c.ProviderTimeout <= 0 {
		return fmt.Errorf("invalid --provider-timeout %s: must be positive", c.ProviderTimeout)
	}
	if c.DegradeAfter < time.Second || c.DegradeAfter > 30*24*time.Hour {
		return fmt.Errorf("invalid --degrade-after %s: want 1s to 720h", c.DegradeAfter)
	}
	if c.RefreshInterval < 10*time.Millisecond || c.RefreshInterval > time.Hour {
		return fmt.Errorf("invalid --background-refresh-interval %s: want 10ms to 1h", c.RefreshInterval)
	}
	if c.RefreshConcurrency < 1 || c.RefreshConcurrency > 1000 {
		return fmt.Errorf("invalid --background-refresh-concurrency %d: want 1 to 1000", c.RefreshConcurrency)
	}
	if c.IdleAfter < 0 {
		return fmt.Errorf("invalid --idle-after %s: want 0 (never) or a duration", c.IdleAfter)
	}
	if c.LastUsedInterval < 10*time.Millisecond || c.LastUsedInterval > 24*time.Hour {
		return fmt.Errorf("invalid --last-used-interval %s: want 10ms to 24h", c.LastUsedInterval)
	}
	if c.IdleAfter > 0 && c.IdleAfter <= c.LastUsedInterval {
		return fmt.Errorf("invalid --idle-after %s: must exceed --last-used-interval %s (uses are written that late)", c.IdleAfter, c.LastUsedInterval)
	}
	if c.TokenCacheTTL < 0 || c.TokenCacheTTL > time.Minute {
		return fmt.Errorf("invalid --token-cache-ttl %s: want 0 to 1m", c.TokenCacheTTL)
	}
	if c.AuditRetention != 0 && c.AuditRetention < time.Hour {
		return fmt.Errorf("invalid --audit-retention %s: want 0 (keep forever) or at least 1h", c.AuditRetention)
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return fmt.Errorf("invalid --metrics-addr %q: want host:port", c.MetricsAddr)
		}
	}
	if c.WebhookConcurrency < 1 || c.WebhookConcurrency > 1000 {
		return fmt.Errorf("invalid --webhook-concurrency %d: want 1 to 1000", c.WebhookConcurrency)
	}
	if c.WebhookTimeout <= 0 || c.WebhookTimeout > 5*time.Minute {
		return fmt.Errorf("invalid --webhook-timeout %s: want more than 0, at most 5m", c.WebhookTimeout)
	}
	if c.WebhookPollInterval < 10*time.Millisecond || c.WebhookPollInterval > 10*time.Minute {
		return fmt.Errorf("invalid --webhook-poll-interval %s: want 10ms to 10m", c.WebhookPollInterval)
	}
	if c.WebhookRetryWindow < time.Minute || c.WebhookRetryWindow > 30*24*time.Hour {
		return fmt.Errorf("invalid --webhook-retry-window %s: want 1m to 720h", c.WebhookRetryWindow)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("invalid --log-format %q: want text or json", c.LogFormat)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	if c.ReplicaID == "" {
		host, _ := os.Hostname()
		c.ReplicaID = fmt.Sprintf("%s-%d-%04x", host, os.Getpid(), rand.Uint32()&0xffff)
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// newLogger returns the process logger writing to w.
func newLogger(w io.Writer, format, level string) *slog.Logger {
	lvl, _ := parseLevel(level)
	opts := &slog.HandlerOptions{Level: lvl}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// getenvFrom adapts os.Getenv for bindServeFlags; tests pass a map.
var getenvFrom = os.Getenv
