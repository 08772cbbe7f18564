package provider_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/provider"
)

// fuzzSecret is the client secret a fuzzed configuration may carry: {cs}
// in the YAML or the environment stands for it.
const fuzzSecret = "cs-config-fuzz-secret"

// FuzzParseConfig feeds the provider configuration parser any file and any
// TOKENBROKER_PROVIDER_* environment, as `serve` reads them, and checks:
// no panic; a refused file yields no configuration; ApplyEnv and Validate
// fail only with a *provider.ValidationError whose every field error names
// a provider, a field and a reason; no error repeats the client secret;
// and parsing, applying the environment and validating are deterministic.
func FuzzParseConfig(f *testing.F) {
	f.Fuzz(func(t *testing.T, yaml, env string) {
		yaml = strings.ReplaceAll(yaml, "{cs}", fuzzSecret)
		var environ []string
		for _, kv := range strings.Split(strings.ReplaceAll(env, "{cs}", fuzzSecret), "\n") {
			if kv != "" {
				environ = append(environ, provider.EnvPrefix+kv)
			}
		}

		cfg, err := provider.ParseConfig(strings.NewReader(yaml))
		if err != nil {
			if cfg != nil {
				t.Fatalf("ParseConfig failed (%v) and returned a configuration", err)
			}
			noSecret(t, yaml+env, err)
			return
		}
		again, err := provider.ParseConfig(bytes.NewReader([]byte(yaml)))
		if err != nil || !reflect.DeepEqual(cfg, again) {
			t.Fatalf("parsing twice differs: %+v, %v", again, err)
		}

		before := clone(cfg)
		if err := cfg.ApplyEnv(environ); err != nil {
			// A deployment refuses to start on this error.
			checkValidationError(t, yaml+env, err)
		}
		if err := cfg.Validate(); err != nil {
			checkValidationError(t, yaml+env, err)
			if err2 := cfg.Validate(); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("validating twice differs: %v then %v", err, err2)
			}
		}
		// ApplyEnv depends on nothing but its input.
		cfg2 := clone(before)
		err1 := cfg2.ApplyEnv(environ)
		cfg3 := clone(before)
		err2 := cfg3.ApplyEnv(environ)
		if !reflect.DeepEqual(cfg2, cfg3) || (err1 == nil) != (err2 == nil) {
			t.Fatal("ApplyEnv is not deterministic")
		}
		if err1 != nil && len(environ) == 0 {
			t.Fatalf("an empty environment was refused: %v", err1)
		}
	})
}

// clone deep-copies a configuration.
func clone(c *provider.Config) *provider.Config {
	cp := &provider.Config{Providers: make([]provider.ProviderConfig, len(c.Providers))}
	for i, pc := range c.Providers {
		pc.Scopes = append([]string(nil), pc.Scopes...)
		pc.PKCEMethods = append([]string(nil), pc.PKCEMethods...)
		pc.ExtraTokenKeys = append([]string(nil), pc.ExtraTokenKeys...)
		if pc.RefreshAhead != nil {
			d := *pc.RefreshAhead
			pc.RefreshAhead = &d
		}
		cp.Providers[i] = pc
	}
	return cp
}

func checkValidationError(t *testing.T, input string, err error) {
	t.Helper()
	var ve *provider.ValidationError
	if !errors.As(err, &ve) || len(ve.Errors) == 0 {
		t.Fatalf("error %T %v is not a *provider.ValidationError with field errors", err, err)
	}
	for _, fe := range ve.Errors {
		if fe.Provider == "" || fe.Field == "" || fe.Msg == "" {
			t.Fatalf("field error %+v lacks its provider, field or reason", fe)
		}
	}
	noSecret(t, input, err)
}

// noSecret fails when err repeats the client secret. (A secret the input
// also uses as something else, say an id, may legitimately be named.)
func noSecret(t *testing.T, input string, err error) {
	t.Helper()
	if strings.Count(input, fuzzSecret) == 0 || !strings.Contains(err.Error(), fuzzSecret) {
		return
	}
	for _, line := range strings.Split(input, "\n") {
		if strings.Contains(line, fuzzSecret) && !strings.Contains(line, "client_secret") && !strings.Contains(line, "CLIENT_SECRET") {
			return // used as something other than the secret
		}
	}
	t.Fatalf("error repeats the client secret: %v", err)
}
