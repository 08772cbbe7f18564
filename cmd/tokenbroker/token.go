package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/spf13/cobra"

	"github.com/tokenbroker/tokenbroker/client"
)

func init() { commands = append(commands, newTokenCmd) }

// Exit codes of `tokenbroker token get` beyond 0 (success) and 1 (any
// other failure), so scripts can react without parsing messages.
const (
	exitReauthRequired      = 3
	exitProviderUnavailable = 4
)

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Get access tokens from a running tokenbroker",
		Example: `  export TOKENBROKER_API_KEY=tbk_...
  tokenbroker token get --url http://127.0.0.1:8080 --user alice --provider github`,
	}
	cmd.AddCommand(newTokenGetCmd())
	return cmd
}

type tokenGetFlags struct {
	url, apiKey, user, provider string
	minValid                    time.Duration
	json                        bool
}

func newTokenGetCmd() *cobra.Command {
	f := &tokenGetFlags{}
	cmd := &cobra.Command{
		Use:   "get --user U --provider P",
		Short: "Print a user's valid access token for a provider",
		Long: `Print a user's valid access token for a provider, asking a running tokenbroker
over its API (GET /api/v1/users/{user}/providers/{provider}/token). The API key
needs the tokens:read scope; prefer the TOKENBROKER_API_KEY environment variable
to --api-key, which other users of the machine may see in the process list.

Prints the bare access token, or with --json the API's token object
(access_token, token_type, expiry, scopes, extra). Never prints a refresh token.

Exit codes: 0 success; 1 any other failure (unreachable server, refused key,
no such link); 2 bad usage (a missing flag or API key, a negative
--min-valid); 3 the link needs re-authentication (the connect URL, when the key
may create one, is printed to stderr); 4 the provider is unavailable, retry
later.`,
		Example: `  export TOKENBROKER_API_KEY=tbk_...
  tokenbroker token get --user alice --provider github
  curl -H "Authorization: Bearer $(tokenbroker token get --user alice --provider github)" https://api.github.com/user
  tokenbroker token get --url https://broker.internal --user alice --provider github --min-valid 10m --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runTokenGet(cmd, f) },
	}
	fs := cmd.Flags()
	fs.StringVar(&f.url, "url", envOr(getenvFrom, "TOKENBROKER_URL", "http://127.0.0.1:8080"), "tokenbroker base URL (env TOKENBROKER_URL)")
	fs.StringVar(&f.apiKey, "api-key", "", "API key with tokens:read (default env TOKENBROKER_API_KEY)")
	fs.StringVar(&f.user, "user", "", "user id (required)")
	fs.StringVar(&f.provider, "provider", "", "provider id (required)")
	fs.DurationVar(&f.minValid, "min-valid", 0, "the token must stay valid at least this long (e.g. 10m)")
	fs.BoolVar(&f.json, "json", false, "print a JSON object instead of the bare token")
	_ = cmd.MarkFlagRequired("user")
	_ = cmd.MarkFlagRequired("provider")
	return cmd
}

func runTokenGet(cmd *cobra.Command, f *tokenGetFlags) error {
	key := f.apiKey
	if key == "" {
		key = getenvFrom("TOKENBROKER_API_KEY")
	}
	if key == "" {
		return exitf(2, "no API key: set TOKENBROKER_API_KEY or --api-key")
	}
	if f.minValid < 0 {
		return exitf(2, "--min-valid must not be negative")
	}
	c := client.New(f.url, key, client.WithUserAgent("tokenbroker-cli/"+version()))
	tok, err := c.Token(cmd.Context(), f.user, f.provider, f.minValid)
	if err != nil {
		var e *client.Error
		if errors.As(err, &e) {
			switch e.Code {
			case client.CodeReauthRequired:
				msg := e.Detail
				if e.ConnectURL != "" {
					msg += "\nconnect again at: " + e.ConnectURL
				}
				return exitf(exitReauthRequired, "%s", msg)
			case client.CodeProviderUnavailable:
				return exitf(exitProviderUnavailable, "%s (retry after %s)", e.Detail, e.RetryAfter)
			}
			return exitf(1, "%s: %s", e.Code, e.Detail)
		}
		// The client's errors start with "tokenbroker: ", which run
		// prints already.
		return exitf(1, "%s", strings.TrimPrefix(err.Error(), "tokenbroker: "))
	}
	out := cmd.OutOrStdout()
	if !f.json {
		fmt.Fprintln(out, tok.AccessToken)
		return nil
	}
	b, _ := json.Marshal(tok)
	fmt.Fprintln(out, string(b))
	return nil
}
