package provider

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/configfile"
)

// EnvPrefix starts every provider environment variable.
const EnvPrefix = "TOKENBROKER_PROVIDER_"

// envFields maps the FIELD part of TOKENBROKER_PROVIDER_<ID>_<FIELD> to a
// setter. Lists are separated by commas or white space.
var envFields = map[string]func(pc *ProviderConfig, v string) error{
	"ID":           func(pc *ProviderConfig, v string) error { pc.ID = v; return nil },
	"KIND":         func(pc *ProviderConfig, v string) error { pc.Kind = v; return nil },
	"DISPLAY_NAME": func(pc *ProviderConfig, v string) error { pc.DisplayName = v; return nil },
	"CLIENT_ID":    func(pc *ProviderConfig, v string) error { pc.ClientID = v; return nil },
	// Setting one source of the secret replaces the other, so that an
	// environment override of a file's client_secret_file is not a conflict.
	"CLIENT_SECRET":       func(pc *ProviderConfig, v string) error { pc.ClientSecret, pc.ClientSecretFile = v, ""; return nil },
	"CLIENT_SECRET_FILE":  func(pc *ProviderConfig, v string) error { pc.ClientSecretFile, pc.ClientSecret = v, ""; return nil },
	"AUTH_STYLE":          func(pc *ProviderConfig, v string) error { pc.AuthStyle = v; return nil },
	"SCOPES":              func(pc *ProviderConfig, v string) error { pc.Scopes = configfile.SplitList(v); return nil },
	"BASE_URL":            func(pc *ProviderConfig, v string) error { pc.BaseURL = v; return nil },
	"TENANT":              func(pc *ProviderConfig, v string) error { pc.Tenant = v; return nil },
	"ISSUER":              func(pc *ProviderConfig, v string) error { pc.Issuer = v; return nil },
	"AUTH_URL":            func(pc *ProviderConfig, v string) error { pc.AuthURL = v; return nil },
	"TOKEN_URL":           func(pc *ProviderConfig, v string) error { pc.TokenURL = v; return nil },
	"DEVICE_URL":          func(pc *ProviderConfig, v string) error { pc.DeviceURL = v; return nil },
	"VALIDATE_URL":        func(pc *ProviderConfig, v string) error { pc.ValidateURL = v; return nil },
	"REVOKE_URL":          func(pc *ProviderConfig, v string) error { pc.RevokeURL = v; return nil },
	"ACCOUNT_ID_FIELD":    func(pc *ProviderConfig, v string) error { pc.AccountIDField = v; return nil },
	"ACCOUNT_LOGIN_FIELD": func(pc *ProviderConfig, v string) error { pc.AccountLoginField = v; return nil },
	"ACCOUNT_EMAIL_FIELD": func(pc *ProviderConfig, v string) error { pc.AccountEmailField = v; return nil },
	"PKCE_METHODS": func(pc *ProviderConfig, v string) error {
		pc.PKCEMethods = configfile.SplitList(v)
		return nil
	},
	"EXTRA_TOKEN_KEYS": func(pc *ProviderConfig, v string) error {
		pc.ExtraTokenKeys = configfile.SplitList(v)
		return nil
	},
	"HOSTS":            func(pc *ProviderConfig, v string) error { pc.Hosts = v; return nil },
	"REFRESH_AHEAD":    func(pc *ProviderConfig, v string) error { return envDuration(&pc.RefreshAhead, v) },
	"INACTIVITY_LIMIT": func(pc *ProviderConfig, v string) error { return envDuration(&pc.InactivityLimit, v) },
	"KEEP_ALIVE":       func(pc *ProviderConfig, v string) error { return envDuration(&pc.KeepAlive, v) },
	"INSECURE_HTTP": func(pc *ProviderConfig, v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("want true or false, got %q", v)
		}
		pc.InsecureHTTP = b
		return nil
	},
}

// envDuration parses an environment duration into *p.
func envDuration(p **Duration, v string) error {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("want a duration such as \"10m\", got %q", v)
	}
	dd := Duration(d)
	*p = &dd
	return nil
}

// envFieldNames lists the keys of envFields, longest first, so that
// CLIENT_SECRET_FILE is tried before CLIENT_SECRET and CLIENT_ID before ID.
var envFieldNames = func() []string {
	names := make([]string, 0, len(envFields))
	for k := range envFields {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		if len(names[i]) != len(names[j]) {
			return len(names[i]) > len(names[j])
		}
		return names[i] < names[j]
	})
	return names
}()

// envKey is the <ID> part of a provider's environment variables: the id
// upper-cased with '-' replaced by '_'.
func envKey(id string) string {
	return strings.ReplaceAll(strings.ToUpper(id), "-", "_")
}

// ApplyEnv applies the variables TOKENBROKER_PROVIDER_<ID>_<FIELD>=value of
// environ (in os.Environ() form) over the configuration. <ID> is a
// provider's id upper-cased with '-' replaced by '_'; <FIELD> is a field's
// YAML name upper-cased (CLIENT_SECRET_FILE, REFRESH_AHEAD, ...). Lists
// (SCOPES, PKCE_METHODS, EXTRA_TOKEN_KEYS) are separated by commas or
// spaces.
//
// Variables for an <ID> that matches no provider of the file define a new
// provider whose id is <ID> lower-cased (set TOKENBROKER_PROVIDER_<ID>_ID
// to choose another, e.g. one with '-'), so a deployment can configure
// providers by environment alone:
//
//	TOKENBROKER_PROVIDER_GITHUB_KIND=github
//	TOKENBROKER_PROVIDER_GITHUB_CLIENT_ID=Iv1.0123456789abcdef
//	TOKENBROKER_PROVIDER_GITHUB_CLIENT_SECRET_FILE=/run/secrets/github
//
// A variable with an unknown field is an error (a misspelt override would
// otherwise be ignored). Variables with a single word after the prefix
// (TOKENBROKER_PROVIDER_TIMEOUT) are not provider fields and are ignored. The error is a [*ValidationError] and never
// contains a value of a secret. Call [Config.Validate] afterwards.
func (c *Config) ApplyEnv(environ []string) error {
	type setting struct{ name, field, value string }
	known := map[string]int{} // env key → index in c.Providers
	for i, pc := range c.Providers {
		if _, dup := known[envKey(pc.ID)]; !dup {
			known[envKey(pc.ID)] = i
		}
	}
	var errs []*FieldError
	groups := map[string][]setting{}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		if !strings.Contains(strings.TrimPrefix(name, EnvPrefix), "_") {
			// One word, e.g. TOKENBROKER_PROVIDER_TIMEOUT: not <ID>_<FIELD>,
			// so a setting of something else.
			continue
		}
		key, field := splitEnvName(strings.TrimPrefix(name, EnvPrefix), known)
		if field == "" {
			errs = append(errs, &FieldError{Provider: "-", Field: name, Msg: "unknown provider field (want " + EnvPrefix + "<ID>_<FIELD>, e.g. " + EnvPrefix + "GITHUB_CLIENT_ID)"})
			continue
		}
		groups[key] = append(groups[key], setting{name, field, value})
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	// Providers of the file keep their order; new ones follow, sorted.
	sort.Slice(keys, func(i, j int) bool {
		ii, iok := known[keys[i]]
		jj, jok := known[keys[j]]
		switch {
		case iok && jok:
			return ii < jj
		case iok != jok:
			return iok
		}
		return keys[i] < keys[j]
	})
	for _, key := range keys {
		settings := groups[key]
		// Apply in a fixed order so the result never depends on the order
		// of the environment.
		sort.Slice(settings, func(i, j int) bool { return settings[i].name < settings[j].name })
		i, ok := known[key]
		if !ok {
			c.Providers = append(c.Providers, ProviderConfig{ID: strings.ToLower(key)})
			i = len(c.Providers) - 1
			known[key] = i
		}
		pc := &c.Providers[i]
		for _, s := range settings {
			if err := envFields[s.field](pc, s.value); err != nil {
				errs = append(errs, &FieldError{Provider: pc.ID, Field: s.name, Msg: err.Error()})
			}
		}
	}
	if len(errs) > 0 {
		return invalid(errs)
	}
	return nil
}

// splitEnvName splits "<ID>_<FIELD>" into the id key and the field name.
// Several splits may fit (GITLAB_CORP_CLIENT_ID is GITLAB_CORP + CLIENT_ID
// or GITLAB_CORP_CLIENT + ID): a split whose id is a known provider wins,
// then the longest field. field is "" when no field fits.
func splitEnvName(rest string, known map[string]int) (key, field string) {
	for _, f := range envFieldNames {
		k, ok := strings.CutSuffix(rest, "_"+f)
		if !ok || k == "" {
			continue
		}
		if _, isKnown := known[k]; isKnown {
			return k, f
		}
		if field == "" {
			key, field = k, f
		}
	}
	return key, field
}
