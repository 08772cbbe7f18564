package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokenbroker/tokenbroker/provider"
)

func init() { commands = append(commands, newProvidersCmd) }

// providersEnviron is the environment the provider configuration reads
// its TOKENBROKER_PROVIDER_* overrides from; tests replace it.
var providersEnviron = os.Environ

func newProvidersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "providers",
		Short: "Inspect the provider configuration",
		Args:  cobra.NoArgs,
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
		Short: "Validate the provider configuration and print it without secrets",
		Long: `Check reads the provider configuration file (and the TOKENBROKER_PROVIDER_<ID>_<FIELD>
environment overrides), validates it, reads each client_secret_file, and prints
every provider with its resolved URLs. Secrets are never printed: a client
secret shows only where it comes from.

With --online it also fetches the OpenID Connect discovery document of each
oidc provider and prints the discovered endpoints. The exit code is 0 when
everything is valid, 1 otherwise. See docs/providers.md for the fields.`,
		Example: `  tokenbroker providers check --config /etc/tokenbroker/providers.yaml
  TOKENBROKER_PROVIDER_GITHUB_KIND=github TOKENBROKER_PROVIDER_GITHUB_CLIENT_ID=Iv1.x tokenbroker providers check
  tokenbroker providers check --config providers.yaml --online`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return providersCheck(cmd.Context(), cmd.OutOrStdout(), file, online, timeout)
		},
	}
	cmd.Flags().StringVar(&file, "config", getenvFrom("TOKENBROKER_PROVIDERS_FILE"), "provider configuration file, YAML (env TOKENBROKER_PROVIDERS_FILE); empty: environment only")
	cmd.Flags().BoolVar(&online, "online", false, "also fetch each oidc provider's discovery document")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "bound of each discovery request with --online")
	return cmd
}

// providersCheck runs `providers check`. It prints to out and returns an
// exitError on any problem; no secret is ever printed.
func providersCheck(ctx context.Context, out io.Writer, file string, online bool, timeout time.Duration) error {
	cfg, err := provider.LoadFile(file, providersEnviron())
	if err != nil {
		var ve *provider.ValidationError
		if errors.As(err, &ve) {
			fmt.Fprintln(out, "invalid provider configuration:")
			for _, fe := range ve.Errors {
				fmt.Fprintf(out, "  %s\n", fe)
			}
			return exitf(1, "%d invalid field(s)", len(ve.Errors))
		}
		return exitf(1, "%v", err)
	}
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
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "%s\t%s\n", r.ID, r.Kind)
		row := func(k, v string) {
			if v != "" {
				fmt.Fprintf(tw, "  %s\t%s\n", k, v)
			}
		}
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
		tw.Flush()
	}
	if problems > 0 {
		return exitf(1, "%d problem(s) found", problems)
	}
	fmt.Fprintf(out, "\n%d provider(s) OK\n", len(cfg.Providers))
	return nil
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
