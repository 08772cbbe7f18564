package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/provider"
)

func init() { commands = append(commands, newDevCmd) }

// devProviderID is the id of the in-process demo provider.
const devProviderID = "demo"

func newDevCmd() *cobra.Command {
	cfg := &serveConfig{}
	var idpAddr, demoUser string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run tokenbroker on the embedded default with a demo provider, for a first look",
		Long: `dev runs "serve" on the embedded default (SQLite in the data directory, with an
encryption key generated there) and starts an in-process fake OAuth2 provider
registered as provider "demo". It creates an admin API key and prints it once,
creates a connect session for a demo user, and prints the URLs to open and the
curl command that fetches the token. The demo provider keeps its grants in
memory: links made with it stop refreshing when dev restarts.`,
		Example: `  tokenbroker dev
  tokenbroker dev --addr 127.0.0.1:9090 --data-dir /tmp/tb`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cfg.DatabaseURL != "" {
				return exitf(2, "dev runs on the embedded SQLite default; use serve for PostgreSQL")
			}
			if err := cfg.Validate(); err != nil {
				return exitf(2, "%v", err)
			}
			if err := tokenbroker.ValidateUserID(demoUser); err != nil {
				return exitf(2, "--user: %s", tokenbroker.ErrorMessage(err))
			}
			idp, err := fakeidp.StartAt(idpAddr, fakeidp.Config{})
			if err != nil {
				return exitf(1, "start the demo provider: %v", err)
			}
			defer idp.Close()
			extra := func(ctx context.Context, pc *provider.Config) error {
				ep := idp.Endpoints()
				pc.Providers = append(pc.Providers, provider.ProviderConfig{
					ID: devProviderID, Kind: "oauth2", DisplayName: "Demo provider (fakeidp)",
					ClientID: fakeidp.DefaultClientID, ClientSecret: fakeidp.DefaultClientSecret,
					AuthURL: ep.Authorize, TokenURL: ep.Token, DeviceURL: ep.DeviceAuthorization,
					ValidateURL: ep.Userinfo, RevokeURL: ep.Revoke, Scopes: []string{"read"},
				})
				return nil
			}
			return serveWith(cmd.Context(), cfg, cmd.OutOrStdout(), cmd.ErrOrStderr(), appOptions{extra: extra, onStart: func(ctx context.Context, a *app) error {
				return devWelcome(ctx, a, idp, demoUser, cmd.OutOrStdout())
			}})
		},
	}
	bindServeFlags(cmd.Flags(), cfg, getenvFrom)
	cmd.Flags().StringVar(&idpAddr, "idp-addr", "127.0.0.1:0", "listen address of the demo provider")
	cmd.Flags().StringVar(&demoUser, "user", "demo-user", "user id the printed connect link is for")
	return cmd
}

// devWelcome creates the admin key and a connect session and prints what
// a newcomer needs.
func devWelcome(ctx context.Context, a *app, idp *fakeidp.Server, user string, w io.Writer) error {
	plain, key, err := createKey(ctx, a.store, "dev-"+time.Now().UTC().Format("20060102T150405Z"), tokenbroker.ScopeAdmin)
	if err != nil {
		return err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	sessionID := base64.RawURLEncoding.EncodeToString(b)
	if err := a.store.CreateConnectSession(ctx, &tokenbroker.ConnectSession{
		ID: sessionID, UserID: user, Providers: []string{devProviderID}, CreatedBy: key.Prefix,
		ExpiresAt: time.Now().Add(time.Hour),
	}); err != nil {
		return err
	}
	connectURL := a.cfg.BaseURL + "/connect/" + sessionID
	base := a.cfg.BaseURL
	fmt.Fprintf(w, `
tokenbroker dev is running on SQLite in %s with the demo provider %q.

Admin API key (shown once, keep it):
  %s

1. Connect the demo account in your browser (pick any user, then Approve):
  %s

2. Fetch the token as a platform would:
  curl -H 'Authorization: Bearer %s' %s/api/v1/users/%s/providers/%s/token

   or with the CLI:
  TOKENBROKER_API_KEY=%s go run ./cmd/tokenbroker token get --url %s --user %s --provider %s

Other things to open: %s/api/v1/providers (with the key), %s/metrics, the demo provider's
counters at %s. Stop with Ctrl-C.
`, a.cfg.DataDir, devProviderID, plain, connectURL, plain, base, user, devProviderID,
		plain, base, user, devProviderID, base, base, idp.Endpoints().Stats)
	return nil
}
