package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/identity"
	"github.com/tokenbroker/tokenbroker/provider"
	"github.com/tokenbroker/tokenbroker/webhook"
)

func init() { commands = append(commands, newProvidersCmd) }

// providersEnviron is the environment the provider configuration reads
// its TOKENBROKER_PROVIDER_* overrides from; tests replace it.
var providersEnviron = os.Environ

func newProvidersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "providers",
		Short: "Inspect the provider configuration",
		Example: `  tokenbroker providers check --config tokenbroker.yaml
  tokenbroker providers check --config tokenbroker.yaml --online`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newProvidersCheckCmd())
	return cmd
}

func newProvidersCheckCmd() *cobra.Command {
	var (
		file    string
		online  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration file and print it without secrets",
		Long: `Check reads the configuration file (and the TOKENBROKER_PROVIDER_<ID>_<FIELD>
environment overrides), validates it, reads each client_secret_file, and prints
every provider with its resolved URLs, then every workload identity trust entry
(reading each jwks_file), then every webhook endpoint with the events it receives
(reading each secret_file). Secrets are never printed: a secret shows only where
it comes from.

With --online it also fetches the OpenID Connect discovery document of each
oidc provider and prints the discovered endpoints, and fetches the discovery
document and key set of each workload identity issuer. The exit code is 0 when
everything is valid, 1 otherwise. See docs/providers.md and docs/identity.md
for the fields.`,
		Example: `  tokenbroker providers check --config /etc/tokenbroker/providers.yaml
  TOKENBROKER_PROVIDER_GITHUB_KIND=github TOKENBROKER_PROVIDER_GITHUB_CLIENT_ID=Iv1.x tokenbroker providers check
  tokenbroker providers check --config providers.yaml --online`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return providersCheck(cmd.Context(), cmd.OutOrStdout(), file, online, timeout)
		},
	}
	bindConfigFlag(cmd.Flags(), &file, getenvFrom)
	cmd.Flags().BoolVar(&online, "online", false, "also fetch each oidc provider's discovery document and each workload identity issuer's keys")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "bound of each discovery request with --online")
	return cmd
}

// providersCheck runs `providers check`. It prints to out and returns an
// exitError on any problem; no secret is ever printed.
func providersCheck(ctx context.Context, out io.Writer, path string, online bool, timeout time.Duration) error {
	file, err := config.Load(path, providersEnviron())
	if err != nil {
		var pe *provider.ValidationError
		var ie *identity.ValidationError
		var we *webhook.ValidationError
		// Each section's errors, all of them: errors.As on each.
		hasP, hasI, hasW := errors.As(err, &pe), errors.As(err, &ie), errors.As(err, &we)
		if hasP || hasI || hasW {
			fmt.Fprintln(out, "invalid configuration:")
			var lines []error
			if hasP {
				lines = append(lines, pe.Unwrap()...)
			}
			if hasI {
				for _, fe := range ie.Errors {
					lines = append(lines, fe)
				}
			}
			if hasW {
				for _, fe := range we.Errors {
					lines = append(lines, fe)
				}
			}
			for _, l := range lines {
				fmt.Fprintf(out, "  %s\n", l)
			}
			return exitf(1, "%d invalid field(s)", len(lines))
		}
		return exitf(1, "%v", err)
	}
	cfg := &file.Providers
	if len(cfg.Providers) == 0 {
		return exitf(1, "no provider configured: give --config or set TOKENBROKER_PROVIDER_<ID>_KIND")
	}
	problems := 0
	client := &http.Client{Timeout: timeout}
	defer client.CloseIdleConnections()
	for i, pc := range cfg.Providers {
		if i > 0 {
			fmt.Fprintln(out)
		}
		r := pc.Resolve()
		e := newEntry(out, r.ID, r.Kind)
		row := e.row
		row("display_name", r.DisplayName)
		row("client_id", r.ClientID)
		secret, serr := secretSource(pc)
		row("client_secret", secret)
		row("scopes", strings.Join(r.Scopes, " "))
		row("base_url", r.BaseURL)
		row("tenant", r.Tenant)
		row("issuer", r.Issuer)
		row("auth_url", r.AuthURL)
		row("token_url", r.TokenURL)
		row("device_url", r.DeviceURL)
		row("validate_url", r.ValidateURL)
		row("revoke_url", r.RevokeURL)
		if pc.ClientSecret == "" && pc.ClientSecretFile == "" {
			row("auth_style", "client_id parameter (public client)")
		} else {
			row("auth_style", orText(r.AuthStyle, "from discovery"))
		}
		row("pkce_methods", strings.Join(r.PKCEMethods, " "))
		if r.RefreshAhead != nil {
			row("refresh_ahead", time.Duration(*r.RefreshAhead).String())
		}
		if r.InactivityLimit != nil && *r.InactivityLimit > 0 {
			row("inactivity_limit", time.Duration(*r.InactivityLimit).String())
		}
		if r.KeepAlive != nil && *r.KeepAlive > 0 {
			row("keep_alive", time.Duration(*r.KeepAlive).String())
		}
		row("extra_token_keys", strings.Join(r.ExtraTokenKeys, " "))
		row("hosts", r.Hosts)
		if serr != nil {
			problems++
			row("error", serr.Error())
		}
		if online && r.Kind == provider.KindOIDC {
			dctx, cancel := context.WithTimeout(ctx, timeout)
			d, err := provider.Discover(dctx, r.Issuer, client)
			cancel()
			if err != nil {
				problems++
				row("discovery", "FAILED: "+firstLine(err.Error()))
			} else {
				row("discovery", "ok")
				row("  authorization", d.AuthURL)
				row("  token", d.TokenURL)
				row("  device", d.DeviceURL)
				row("  userinfo", d.UserinfoURL)
				row("  revocation", d.RevocationURL)
				row("  auth methods", strings.Join(d.TokenEndpointAuthMeth, " "))
			}
		}
		e.flush()
	}
	problems += checkWorkloadIdentities(ctx, out, &file.Identity, client, online, timeout)
	problems += printWebhooks(out, file.Webhooks)
	if problems > 0 {
		return exitf(1, "%d problem(s) found", problems)
	}
	fmt.Fprintf(out, "\n%d provider(s) OK\n", len(cfg.Providers))
	if n := len(file.Identity.WorkloadIdentities); n > 0 {
		fmt.Fprintf(out, "%d workload identity trust entr(ies) OK\n", n)
	}
	if n := len(file.Webhooks.Webhooks); n > 0 {
		fmt.Fprintf(out, "%d webhook endpoint(s) OK\n", n)
	}
	return nil
}

// printWebhooks prints the webhook endpoints, their secrets only by
// source, and returns how many cannot be used (an unreadable secret file).
func printWebhooks(out io.Writer, hooks webhook.Config) int {
	problems := 0
	for _, ec := range hooks.Webhooks {
		fmt.Fprintln(out)
		e := newEntry(out, ec.EndpointID(), "webhook")
		e.row("url", redactQuery(ec.URL))
		src, err := ec.SecretSource()
		e.row("secret", src)
		e.row("events", ec.Types())
		if err != nil {
			problems++
			e.row("error", err.Error())
		}
		e.flush()
	}
	return problems
}

// entry prints one configured item: a heading (its id and kind) and its
// non-empty fields, one a line, aligned.
type entry struct{ tw *tabwriter.Writer }

func newEntry(out io.Writer, id, kind string) *entry {
	e := &entry{tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)}
	fmt.Fprintf(e.tw, "%s\t%s\n", id, kind)
	return e
}

// row prints field k with value v, unless v is empty.
func (e *entry) row(k, v string) {
	if v != "" {
		fmt.Fprintf(e.tw, "  %s\t%s\n", k, v)
	}
}

func (e *entry) flush() { e.tw.Flush() }

// redactQuery shows a URL without its query, which may carry a credential.
func redactQuery(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.RawQuery != "" {
		u.RawQuery = "xxxxx"
	}
	return u.Redacted()
}

// checkWorkloadIdentities prints the trust entries and, with online,
// fetches each issuer's discovery document and key set. It returns the
// number of problems.
func checkWorkloadIdentities(ctx context.Context, out io.Writer, cfg *identity.Config, client *http.Client, online bool, timeout time.Duration) int {
	if len(cfg.WorkloadIdentities) == 0 {
		return 0
	}
	v, err := identity.NewVerifier(cfg, identity.Options{HTTPClient: client})
	if err != nil {
		fmt.Fprintf(out, "\n%s\n", err)
		return 1
	}
	problems := 0
	for _, t := range cfg.WorkloadIdentities {
		fmt.Fprintln(out)
		e := newEntry(out, t.ID, "workload identity")
		row := e.row
		row("issuer", t.Issuer)
		row("jwks_file", t.JWKSFile)
		row("audience", t.Audience)
		row("subject", t.Subject)
		names := make([]string, 0, len(t.Claims))
		for k := range t.Claims {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			row("claim "+k, t.Claims[k])
		}
		if t.UserClaim != "" {
			row("users", "the value of claim "+t.UserClaim)
		} else {
			row("users", strings.Join(t.Users, " "))
		}
		row("providers", strings.Join(t.Providers, " "))
		scopes := t.Scopes
		if len(scopes) == 0 {
			scopes = []string{"tokens:read (default)"}
		}
		row("scopes", strings.Join(scopes, " "))
		if t.MaxTokenAge != nil {
			row("max_token_age", time.Duration(*t.MaxTokenAge).String())
		}
		if online || t.JWKSFile != "" {
			pctx, cancel := context.WithTimeout(ctx, timeout)
			src, n, err := v.Probe(pctx, t.ID)
			cancel()
			if err != nil {
				problems++
				row("keys", "FAILED: "+firstLine(err.Error()))
			} else {
				row("keys", fmt.Sprintf("ok, %d from %s", n, src))
			}
		}
		e.flush()
	}
	return problems
}

// secretSource says where the client secret comes from, never what it is,
// and checks that a secret file is readable.
func secretSource(pc provider.ProviderConfig) (string, error) {
	switch {
	case pc.ClientSecretFile != "":
		if _, err := pc.LoadSecret(); err != nil {
			return "from file " + pc.ClientSecretFile + " (unreadable)", err
		}
		return "from file " + pc.ClientSecretFile, nil
	case pc.ClientSecret != "":
		return "set (inline or environment)", nil
	}
	return "none (public client)", nil
}

// firstLine keeps the first line of s, cut to 200 bytes.
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// orText returns s, or def when s is empty.
func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
