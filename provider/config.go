package provider

import (
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/configfile"
)

// Config is a provider configuration file:
//
//	providers:
//	  - id: github
//	    kind: github
//	    client_id: Iv1.0123456789abcdef
//	    client_secret_file: /run/secrets/github-client-secret
//	    refresh_ahead: 15m
//	    extra_token_keys: [refresh_token_expires_in]
//
// Parse it with [ParseConfig], apply environment overrides with
// [Config.ApplyEnv], then check it with [Config.Validate]. Package config
// reads the whole configuration file, of which this is one section.
type Config struct {
	Providers []ProviderConfig `yaml:"providers"`
}

// ProviderConfig configures one provider. Empty fields take the defaults of
// the kind (see docs/providers.md); [ProviderConfig.Resolve] fills them in.
// Every field can also be set by an environment variable
// TOKENBROKER_PROVIDER_<ID>_<FIELD> (see [Config.ApplyEnv]).
type ProviderConfig struct {
	// ID is the provider's id in URLs and links ("github", "gitlab-corp").
	ID string `yaml:"id"`
	// Kind is one of [Kinds]: oauth2, github, gitlab, bitbucket-cloud,
	// gitea, forgejo, microsoft, azure-devops, google, slack, oidc.
	Kind        string `yaml:"kind"`
	DisplayName string `yaml:"display_name"`

	ClientID string `yaml:"client_id"`
	// ClientSecret is the client secret itself; ClientSecretFile names a
	// file holding it (trailing newlines are ignored). At most one of the
	// two is set; neither makes a public client (RFC 6749 §2.1).
	ClientSecret     string `yaml:"client_secret"`
	ClientSecretFile string `yaml:"client_secret_file"`
	// AuthStyle is how the client authenticates at the token endpoint
	// (RFC 6749 §2.3.1): "header" (HTTP Basic) or "params" (client_id and
	// client_secret in the form). Empty: the kind's default. It is never
	// auto-detected, so no request is ever sent twice.
	AuthStyle string `yaml:"auth_style"`

	Scopes []string `yaml:"scopes"`

	// BaseURL is the root of a self-hosted instance (GitHub Enterprise
	// Server, GitLab, Gitea, Forgejo) or the authority of a national
	// Microsoft cloud.
	BaseURL string `yaml:"base_url"`
	// Tenant is the Microsoft Entra tenant (default "common").
	Tenant string `yaml:"tenant"`
	// Issuer is the OpenID Connect issuer for kind oidc; the endpoints are
	// discovered from it (OpenID Connect Discovery 1.0).
	Issuer string `yaml:"issuer"`

	AuthURL     string `yaml:"auth_url"`
	TokenURL    string `yaml:"token_url"`
	DeviceURL   string `yaml:"device_url"`
	ValidateURL string `yaml:"validate_url"`
	RevokeURL   string `yaml:"revoke_url"`

	// AccountIDField, AccountLoginField and AccountEmailField name the
	// members of the validate_url answer that hold the account's id, login
	// and e-mail. Empty: the kind's defaults (for oauth2: "id" or "sub",
	// "login", "preferred_username" or "username", and "email").
	AccountIDField    string `yaml:"account_id_field"`
	AccountLoginField string `yaml:"account_login_field"`
	AccountEmailField string `yaml:"account_email_field"`

	// PKCEMethods lists the PKCE methods (RFC 7636) to use: ["S256"] (the
	// default when unset) or ["none"] (or an empty list) to send no code
	// challenge to a server that rejects one.
	PKCEMethods []string `yaml:"pkce_methods"`
	// RefreshAhead is how long before expiry a token is refreshed; unset:
	// the kind's default.
	RefreshAhead *Duration `yaml:"refresh_ahead"`
	// InactivityLimit is how long the provider lets a grant live unused:
	// its refresh token expires when no refresh used it for this long. An
	// idle link past it is marked reauth_required (reason inactivity).
	// Unset: the kind's documented limit (docs/providers.md); 0: none.
	InactivityLimit *Duration `yaml:"inactivity_limit"`
	// KeepAlive refreshes a link that is still used (not idle) whose
	// tokens were obtained longer ago than this, so its grant never
	// reaches InactivityLimit. Unset: nine tenths of InactivityLimit; 0:
	// off.
	KeepAlive *Duration `yaml:"keep_alive"`
	// ExtraTokenKeys are members of the token response to keep in
	// [tokenbroker.Token.Extra], as strings (e.g. refresh_token_expires_in).
	ExtraTokenKeys []string `yaml:"extra_token_keys"`
	// Hosts is a regular expression of the hosts this provider serves,
	// matched against the whole host name ("github\.com"). Empty: the
	// kind's default (the host of base_url for self-hosted kinds).
	Hosts string `yaml:"hosts"`
	// InsecureHTTP allows plain http:// URLs to hosts other than loopback,
	// for test installations only. RFC 6749 §3.1 and §3.2 require TLS.
	InsecureHTTP bool `yaml:"insecure_http"`
}

// Duration is a time.Duration written as a Go duration string ("15m").
type Duration time.Duration

// UnmarshalYAML parses a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration such as \"10m\"", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: want a duration such as \"10m\", got %q", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// FieldError is one invalid field of a provider configuration. Its message
// never contains a client secret.
type FieldError struct {
	// Provider is the provider's id, or "#N" (1-based position) when the
	// id itself is missing or invalid.
	Provider string
	// Field is the YAML name of the field, or the environment variable.
	Field string
	Msg   string
}

// Error implements the error interface.
func (e *FieldError) Error() string {
	return fmt.Sprintf("provider %s: %s: %s", e.Provider, e.Field, e.Msg)
}

// ValidationError is the list of every invalid field that
// [Config.Validate] or [Config.ApplyEnv] found: one field per line, and
// the field errors for errors.As.
type ValidationError = configfile.ValidationError[*FieldError]

// invalid returns the [*ValidationError] of errs.
func invalid(errs []*FieldError) *ValidationError {
	return &ValidationError{Section: "provider", Errors: errs}
}

// ParseConfig reads a YAML configuration from r. Unknown fields are errors
// (a misspelt field would otherwise be silently ignored). It does not
// validate: call [Config.Validate] after [Config.ApplyEnv].
func ParseConfig(r io.Reader) (*Config, error) {
	cfg := &Config{}
	if err := configfile.Decode(r, cfg); err != nil {
		return nil, fmt.Errorf("provider config: %w", err)
	}
	return cfg, nil
}

// Validate checks every provider and returns a [*ValidationError] listing
// every invalid field, or nil. It reads no file and makes no request. A
// configuration without providers is valid (a server can start without
// any); `tokenbroker providers check` reports it.
func (c *Config) Validate() error {
	var errs []*FieldError
	seen := map[string]int{}
	seenEnv := map[string]string{}
	for i := range c.Providers {
		pc := &c.Providers[i]
		fe := pc.validate(i)
		errs = append(errs, fe...)
		if pc.ID == "" {
			continue
		}
		if j, ok := seen[pc.ID]; ok {
			errs = append(errs, &FieldError{Provider: pc.ID, Field: "id", Msg: fmt.Sprintf("duplicate id (also provider #%d)", j+1)})
			continue
		}
		seen[pc.ID] = i
		if other, ok := seenEnv[envKey(pc.ID)]; ok {
			errs = append(errs, &FieldError{Provider: pc.ID, Field: "id", Msg: fmt.Sprintf("same environment name %s as provider %s", envKey(pc.ID), other)})
		}
		seenEnv[envKey(pc.ID)] = pc.ID
	}
	if len(errs) > 0 {
		return invalid(errs)
	}
	return nil
}

// validate checks one provider; i is its position.
func (pc *ProviderConfig) validate(i int) []*FieldError {
	name := pc.ID
	if tokenbroker.ValidateProviderID(pc.ID) != nil {
		name = fmt.Sprintf("#%d", i+1)
	}
	var errs []*FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Provider: name, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if pc.ID == "" {
		bad("id", "required")
	} else if err := tokenbroker.ValidateProviderID(pc.ID); err != nil {
		bad("id", "%q: want 1-63 characters of a-z, 0-9, _ and -, starting with a letter or digit", pc.ID)
	}
	spec, ok := kinds[pc.Kind]
	switch {
	case pc.Kind == "":
		bad("kind", "required (one of %s)", strings.Join(Kinds(), ", "))
	case !ok:
		bad("kind", "unknown kind %q (want one of %s)", pc.Kind, strings.Join(Kinds(), ", "))
	}
	if pc.ClientID == "" {
		bad("client_id", "required")
	} else if strings.ContainsAny(pc.ClientID, "\r\n") {
		bad("client_id", "must be one line")
	}
	if pc.ClientSecret != "" && pc.ClientSecretFile != "" {
		bad("client_secret", "set client_secret or client_secret_file, not both")
	}
	switch pc.AuthStyle {
	case "", authStyleHeader, authStyleParams:
	default:
		bad("auth_style", "%q: want %q or %q", pc.AuthStyle, authStyleHeader, authStyleParams)
	}
	for _, s := range pc.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\",") {
			bad("scopes", "%q: a scope is a non-empty token without spaces, commas or quotes", s)
		}
	}
	if len(pc.PKCEMethods) > 1 && slices.Contains(pc.PKCEMethods, "none") {
		bad("pkce_methods", `"none" cannot be combined with other methods`)
	}
	for _, m := range pc.PKCEMethods {
		if m != "S256" && m != "none" {
			bad("pkce_methods", "%q: want S256 or none (the plain method is not supported, RFC 7636 §7.2)", m)
		}
	}
	if pc.RefreshAhead != nil {
		if d := time.Duration(*pc.RefreshAhead); d < 0 || d > 24*time.Hour {
			bad("refresh_ahead", "%s: want a duration between 0 and 24h", d)
		}
	}
	if pc.InactivityLimit != nil {
		if d := time.Duration(*pc.InactivityLimit); d < 0 || d > maxInactivityLimit {
			bad("inactivity_limit", "%s: want 0 (none) or a duration up to %s", d, maxInactivityLimit)
		}
	}

	for _, k := range pc.ExtraTokenKeys {
		switch k {
		case "":
			bad("extra_token_keys", "empty key")
		case "access_token", "refresh_token", "id_token", "token_type", "expires_in", "scope":
			bad("extra_token_keys", "%q is a standard member and is kept anyway", k)
		}
	}
	if pc.Hosts != "" {
		if _, err := compileHosts(pc.Hosts); err != nil {
			bad("hosts", "invalid regular expression: %v", err)
		}
	}
	if !ok {
		return errs
	}
	// Kind-specific requirements, checked on the resolved configuration.
	if pc.BaseURL != "" && !spec.baseURL {
		bad("base_url", "not supported by kind %s", pc.Kind)
	}
	if pc.Tenant != "" && !spec.tenant {
		bad("tenant", "only for kinds microsoft and azure-devops")
	} else if pc.Tenant != "" && !tenantRe.MatchString(pc.Tenant) {
		bad("tenant", "%q: want a tenant id or domain", pc.Tenant)
	}
	if pc.Issuer != "" && pc.Kind != KindOIDC {
		bad("issuer", "only for kind oidc")
	}
	r := pc.Resolve()
	if pc.KeepAlive != nil {
		d := time.Duration(*pc.KeepAlive)
		switch limit := r.InactivityLimit; {
		case d < 0 || d > maxInactivityLimit:
			bad("keep_alive", "%s: want 0 (off) or a duration up to %s", d, maxInactivityLimit)
		case d != 0 && limit != nil && *limit > 0 && d >= time.Duration(*limit):
			bad("keep_alive", "%s: must be shorter than inactivity_limit (%s), or the grant expires first", d, time.Duration(*limit))
		}
	}
	for _, f := range spec.required {
		if r.field(f) == "" {
			bad(f, "required for kind %s", pc.Kind)
		}
	}
	for _, f := range urlFields {
		v := r.field(f)
		if v == "" {
			continue
		}
		if msg := configfile.CheckURL(v, r.InsecureHTTP); msg != "" {
			bad(f, "%s: %s", redactURL(v), msg)
		}
	}
	return errs
}

// maxInactivityLimit bounds inactivity_limit and keep_alive (ten years).
const maxInactivityLimit = 10 * 365 * 24 * time.Hour

var tenantRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]{0,253}$`)

// urlFields are the YAML names of the URL fields.
var urlFields = []string{"base_url", "issuer", "auth_url", "token_url", "device_url", "validate_url", "revoke_url"}

// field returns the value of a URL field by YAML name.
func (pc *ProviderConfig) field(name string) string {
	switch name {
	case "base_url":
		return pc.BaseURL
	case "issuer":
		return pc.Issuer
	case "auth_url":
		return pc.AuthURL
	case "token_url":
		return pc.TokenURL
	case "device_url":
		return pc.DeviceURL
	case "validate_url":
		return pc.ValidateURL
	case "revoke_url":
		return pc.RevokeURL
	}
	return ""
}

// redactURL drops credentials from a URL before it is shown.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// LoadSecret returns the client secret: ClientSecret, or the content of
// ClientSecretFile without trailing newlines. The error never contains the
// secret.
func (pc *ProviderConfig) LoadSecret() (string, error) {
	if pc.ClientSecretFile == "" {
		return pc.ClientSecret, nil
	}
	b, err := configfile.ReadFile(pc.ClientSecretFile)
	if err != nil {
		return "", &FieldError{Provider: pc.ID, Field: "client_secret_file", Msg: fmt.Sprintf("cannot read %s: %v", pc.ClientSecretFile, err)}
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", &FieldError{Provider: pc.ID, Field: "client_secret_file", Msg: pc.ClientSecretFile + " is empty"}
	}
	if strings.ContainsAny(s, "\r\n") {
		return "", &FieldError{Provider: pc.ID, Field: "client_secret_file", Msg: pc.ClientSecretFile + " holds more than one line"}
	}
	return s, nil
}
