package main

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/tokenbroker/tokenbroker/refresh"
)

// fuzzDBPassword is the database password a fuzzed environment may carry:
// {pw} in a value stands for it.
const fuzzDBPassword = "pg-fuzz-password"

// FuzzServeEnv feeds serve's configuration any environment (one NAME=value
// a line) and checks: no panic; a duration that does not parse is refused;
// a refused configuration fails with one line per problem, each naming the
// flag or the variable, never repeating the database password; an accepted one
// keeps every limit Validate promises (a lease of at least 1s, a lease
// grace above the commit retry interval and within the lease, a positive
// provider timeout, token cache 0 to 1m, a known log format and level, a
// base URL without trailing slash, a replica id) and took each value that
// was set and parses; and the same environment gives the same answer.
func FuzzServeEnv(f *testing.F) {
	f.Fuzz(func(t *testing.T, env string) {
		vars := map[string]string{}
		for _, line := range strings.Split(strings.ReplaceAll(env, "{pw}", fuzzDBPassword), "\n") {
			if name, value, ok := strings.Cut(line, "="); ok {
				vars["TOKENBROKER_"+name] = value
			}
		}
		getenv := func(k string) string { return vars[k] }

		cfg, err := fuzzServeConfig(getenv)
		_, err2 := fuzzServeConfig(getenv)
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
			t.Fatalf("one environment, two answers: %v, %v", err, err2)
		}
		for _, name := range []string{"TOKENBROKER_LEASE_TTL", "TOKENBROKER_LEASE_GRACE", "TOKENBROKER_PROVIDER_TIMEOUT", "TOKENBROKER_TOKEN_CACHE_TTL"} {
			if v := vars[name]; v != "" && err == nil {
				if _, perr := time.ParseDuration(v); perr != nil {
					t.Fatalf("%s=%q does not parse, yet the configuration was accepted", name, v)
				}
			}
		}
		if err != nil {
			msg := err.Error()
			for _, line := range strings.Split(msg, "\n") {
				if !strings.HasPrefix(line, "invalid --") && !strings.HasPrefix(line, "invalid TOKENBROKER_") {
					t.Fatalf("error line %q does not name the flag or variable", line)
				}
			}
			if strings.Contains(msg, fuzzDBPassword) && onlyInDatabaseURL(vars) {
				t.Fatalf("error %q repeats the database password", msg)
			}
			return
		}
		switch {
		case cfg.LeaseTTL < time.Second:
			t.Fatalf("accepted lease TTL %s", cfg.LeaseTTL)
		case cfg.LeaseGrace <= refresh.DefaultCommitRetryInterval || cfg.LeaseGrace > cfg.LeaseTTL:
			t.Fatalf("accepted lease grace %s with lease %s", cfg.LeaseGrace, cfg.LeaseTTL)
		case cfg.ProviderTimeout <= 0:
			t.Fatalf("accepted provider timeout %s", cfg.ProviderTimeout)
		case cfg.TokenCacheTTL < 0 || cfg.TokenCacheTTL > time.Minute:
			t.Fatalf("accepted token cache TTL %s", cfg.TokenCacheTTL)
		case cfg.LogFormat != "text" && cfg.LogFormat != "json":
			t.Fatalf("accepted log format %q", cfg.LogFormat)
		case strings.HasSuffix(cfg.BaseURL, "/"):
			t.Fatalf("base URL %q keeps a trailing slash", cfg.BaseURL)
		case cfg.ReplicaID == "":
			t.Fatal("no replica id")
		}
		if _, err := parseLevel(cfg.LogLevel); err != nil {
			t.Fatalf("accepted log level %q", cfg.LogLevel)
		}
		for name, got := range map[string]string{
			"TOKENBROKER_ADDR": cfg.Addr, "TOKENBROKER_DATABASE_URL": cfg.DatabaseURL,
			"TOKENBROKER_LOG_FORMAT": cfg.LogFormat, "TOKENBROKER_LOG_LEVEL": cfg.LogLevel,
			"TOKENBROKER_REPLICA_ID": cfg.ReplicaID, "TOKENBROKER_PROVIDERS_FILE": cfg.ProvidersFile,
		} {
			if v := vars[name]; v != "" && v != got {
				t.Fatalf("%s=%q set, configuration has %q", name, v, got)
			}
		}
		for name, got := range map[string]time.Duration{
			"TOKENBROKER_LEASE_TTL": cfg.LeaseTTL, "TOKENBROKER_LEASE_GRACE": cfg.LeaseGrace, "TOKENBROKER_PROVIDER_TIMEOUT": cfg.ProviderTimeout,
			"TOKENBROKER_TOKEN_CACHE_TTL": cfg.TokenCacheTTL,
		} {
			if d, err := time.ParseDuration(vars[name]); err == nil && d != got {
				t.Fatalf("%s=%q set, configuration has %s", name, vars[name], got)
			}
		}
	})
}

// fuzzServeConfig builds serve's configuration from getenv alone, as the
// serve command does before it opens anything.
func fuzzServeConfig(getenv func(string) string) (*serveConfig, error) {
	cfg := &serveConfig{}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	bindServeFlags(fs, cfg, getenv)
	if err := fs.Parse(nil); err != nil {
		return nil, err
	}
	return cfg, cfg.Validate()
}

// onlyInDatabaseURL reports whether the password appears in no variable
// but the database URL, so that an error repeating it leaks it.
func onlyInDatabaseURL(vars map[string]string) bool {
	for name, v := range vars {
		if name != "TOKENBROKER_DATABASE_URL" && strings.Contains(v, fuzzDBPassword) {
			return false
		}
	}
	return true
}
