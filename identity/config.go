package identity

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/configfile"
	"github.com/tokenbroker/tokenbroker/provider"
)

// Config is the workload_identities section of the configuration file:
//
//	workload_identities:
//	  - id: github-actions
//	    issuer: https://token.actions.githubusercontent.com
//	    audience: https://tokenbroker.example.com
//	    subject: "repo:acme/*"
//	    claims:
//	      repository_owner: acme
//	    user_claim: actor
//	    providers: [github]
//
// Its YAML key is declared here; the file as a whole is parsed by package
// config. Check it with [Config.Validate].
type Config struct {
	WorkloadIdentities []Trust `yaml:"workload_identities"`
}

// Trust is one trust entry: which signed JWTs are accepted, and what a
// workload presenting one may do. docs/identity.md documents each field.
type Trust struct {
	// ID names the entry in the audit trail and in logs.
	ID string `yaml:"id"`
	// Issuer is the exact iss claim. Without JWKSFile it is an OpenID
	// Connect issuer URL: its discovery document names the JWKS, which is
	// fetched, cached and refreshed.
	Issuer string `yaml:"issuer"`
	// JWKSFile is a JSON Web Key Set file (RFC 7517 §5) to verify with
	// instead of discovery: a SPIFFE trust bundle, or the keys of an
	// air-gapped cluster. It is read at start.
	JWKSFile string `yaml:"jwks_file"`
	// Audience is required; one of the JWT's aud values must equal it.
	Audience string `yaml:"audience"`
	// Subject, if set, is a glob the sub claim must match: '*' matches any
	// run of characters (including '/' and ':'), everything else itself.
	Subject string `yaml:"subject"`
	// Claims are further claims that must be present with exactly these
	// values (strings; numbers and booleans compare by their JSON text).
	Claims map[string]string `yaml:"claims"`
	// UserClaim names the claim whose value is the user the workload acts
	// for (e.g. actor, preferred_username). Exactly one of UserClaim and
	// Users is set.
	UserClaim string `yaml:"user_claim"`
	// Users lists the users the workload may act for.
	Users []string `yaml:"users"`
	// Providers lists the providers the workload may act on (required).
	Providers []string `yaml:"providers"`
	// Scopes are granted as for API keys; default tokens:read. admin is
	// not allowed.
	Scopes []string `yaml:"scopes"`
	// MaxTokenAge refuses JWTs issued longer ago than this (by iat, else
	// nbf; without either, JWTs valid for longer than this); default
	// [DefaultMaxTokenAge].
	MaxTokenAge *provider.Duration `yaml:"max_token_age"`
}

// DefaultMaxTokenAge is the default [Trust.MaxTokenAge].
const DefaultMaxTokenAge = time.Hour

// maxTokenAge returns the effective maximum age.
func (t *Trust) maxTokenAge() time.Duration {
	if t.MaxTokenAge == nil {
		return DefaultMaxTokenAge
	}
	return time.Duration(*t.MaxTokenAge)
}

// scopes returns the effective scopes.
func (t *Trust) scopes() []string {
	if len(t.Scopes) == 0 {
		return []string{tokenbroker.ScopeTokensRead}
	}
	return t.Scopes
}

// FieldError is one invalid field of a trust entry.
type FieldError struct {
	// Trust is the entry's id, or "#N" (1-based position) when the id
	// itself is missing or invalid.
	Trust string
	Field string
	Msg   string
}

// Error implements the error interface.
func (e *FieldError) Error() string {
	return fmt.Sprintf("workload identity %s: %s: %s", e.Trust, e.Field, e.Msg)
}

// ValidationError lists every invalid field [Config.Validate] found: one
// field per line, and the field errors for errors.As.
type ValidationError = configfile.ValidationError[*FieldError]

var trustIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Validate checks every entry and returns a [*ValidationError] listing
// every invalid field, or nil. providerIDs are the configured providers
// an entry may name (nil: not checked). It reads no file and makes no
// request; [NewVerifier] reads the jwks_files.
func (c *Config) Validate(providerIDs []string) error {
	var errs []*FieldError
	seen := map[string]bool{}
	keySource := map[string]string{} // issuer → its jwks_file ("" for discovery)
	for i := range c.WorkloadIdentities {
		t := &c.WorkloadIdentities[i]
		errs = append(errs, t.validate(i, providerIDs)...)
		if t.ID != "" {
			if seen[t.ID] {
				errs = append(errs, &FieldError{Trust: t.ID, Field: "id", Msg: "duplicate id"})
			}
			seen[t.ID] = true
		}
		// Entries of one issuer share its key set.
		if src, ok := keySource[t.Issuer]; ok && src != t.JWKSFile {
			errs = append(errs, &FieldError{Trust: t.ID, Field: "jwks_file", Msg: "entries of the same issuer must take their keys from the same place"})
		} else if !ok {
			keySource[t.Issuer] = t.JWKSFile
		}
	}
	if len(errs) > 0 {
		return &ValidationError{Section: "workload identity", Errors: errs}
	}
	return nil
}

func (t *Trust) validate(i int, providerIDs []string) []*FieldError {
	name := t.ID
	if !trustIDRe.MatchString(t.ID) {
		name = fmt.Sprintf("#%d", i+1)
	}
	var errs []*FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Trust: name, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	switch {
	case t.ID == "":
		bad("id", "required")
	case !trustIDRe.MatchString(t.ID):
		bad("id", "%q: want 1-63 characters of letters, digits, ., _ and -, starting with a letter or digit", t.ID)
	}
	switch {
	case t.Issuer == "":
		bad("issuer", "required")
	case strings.ContainsAny(t.Issuer, " \t\r\n"):
		bad("issuer", "must not contain white space")
	case t.JWKSFile == "":
		if msg := checkIssuerURL(t.Issuer); msg != "" {
			bad("issuer", "%s: %s (or set jwks_file)", t.Issuer, msg)
		}
	}
	if t.Audience == "" {
		bad("audience", "required: the exact aud value the workload's token carries for this server")
	}
	if t.Subject != "" && strings.TrimSpace(t.Subject) != t.Subject {
		bad("subject", "must not start or end with white space")
	}
	for k, v := range t.Claims {
		switch k {
		case "":
			bad("claims", "empty claim name")
		case "iss", "aud", "exp", "nbf", "iat", "sub":
			bad("claims", "%q is checked by issuer, audience, subject and the validity checks; remove it", k)
		}
		if v == "" {
			bad("claims", "%s: empty value", k)
		}
	}
	switch {
	case t.UserClaim == "" && len(t.Users) == 0:
		bad("user_claim", "set user_claim (the claim naming the user) or users (a list)")
	case t.UserClaim != "" && len(t.Users) > 0:
		bad("user_claim", "set user_claim or users, not both")
	}
	for _, u := range t.Users {
		if tokenbroker.ValidateUserID(u) != nil {
			bad("users", "%q: invalid user id", u)
		}
	}
	if len(t.Providers) == 0 {
		bad("providers", "required: the providers this workload may get tokens for")
	}
	for _, p := range t.Providers {
		switch {
		case tokenbroker.ValidateProviderID(p) != nil:
			bad("providers", "%q: invalid provider id", p)
		case providerIDs != nil && !slices.Contains(providerIDs, p):
			bad("providers", "%q: no such provider is configured", p)
		}
	}
	for _, s := range t.Scopes {
		switch {
		case s == tokenbroker.ScopeAdmin:
			bad("scopes", "admin cannot be granted to a workload identity")
		case !slices.Contains(tokenbroker.AllScopes, s):
			bad("scopes", "%q: want %s", s, strings.Join([]string{tokenbroker.ScopeTokensRead, tokenbroker.ScopeLinksRead, tokenbroker.ScopeLinksWrite}, ", "))
		}
	}
	if t.MaxTokenAge != nil {
		if d := time.Duration(*t.MaxTokenAge); d <= 0 || d > 24*time.Hour {
			bad("max_token_age", "%s: want a duration from 1s to 24h", d)
		}
	}
	return errs
}

// checkIssuerURL says why s is not an issuer URL whose discovery document
// may be fetched, or "".
func checkIssuerURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return "not an absolute URL"
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "must not contain credentials, a query or a fragment"
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !configfile.IsLoopback(u.Hostname()) {
			return "must use https (http only for loopback hosts)"
		}
	default:
		return "scheme must be https"
	}
	return ""
}
