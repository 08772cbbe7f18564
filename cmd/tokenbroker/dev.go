package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apikey"
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
registered as provider "demo". It prints an admin API key (made on the first
run and kept in the data directory, so a restart shows the same key), creates a
connect session for a demo user, and prints the URLs to open and the curl
command that fetches the token. The demo provider keeps its grants in
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

// devAdminKeyFile holds, in dev's data directory (mode 0600), the admin
// key dev made, so that a restart shows the same key instead of minting
// another.
const devAdminKeyFile = "dev-admin-key"

// devAdminKey returns dev's admin key: the one in dataDir/devAdminKeyFile
// while the database still accepts it, else a new one, written there.
// reused tells which.
func devAdminKey(ctx context.Context, st tokenbroker.APIKeyStore, dataDir string) (plain string, k *tokenbroker.APIKey, reused bool, err error) {
	path := filepath.Join(dataDir, devAdminKeyFile)
	if b, err := os.ReadFile(path); err == nil {
		plain := strings.TrimSpace(string(b))
		if prefix, secret, err := apikey.Parse(plain); err == nil {
			k, err := st.GetAPIKeyByPrefix(ctx, prefix)
			if err == nil && !k.Revoked() && apikey.VerifySecret(secret, k.SecretHash) {
				return plain, k, true, nil
			}
		}
	}
	plain, k, err = createKey(ctx, st, "dev", tokenbroker.ScopeAdmin)
	if err != nil {
		return "", nil, false, err
	}
	// Write-then-rename: a crash never leaves a half-written key file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(plain+"\n"), 0o600); err != nil {
		return "", nil, false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", nil, false, err
	}
	return plain, k, false, nil
}

// devWelcome finds or creates the admin key, creates a connect session
// and prints what a newcomer needs, in whole sentences.
func devWelcome(ctx context.Context, a *app, idp *fakeidp.Server, user string, w io.Writer) error {
	plain, key, reused, err := devAdminKey(ctx, a.store, a.cfg.DataDir)
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
	keyNote := "This is a new admin API key. It is kept in " + filepath.Join(a.cfg.DataDir, devAdminKeyFile) + " so that dev shows it again after a restart:"
	if reused {
		keyNote = "This is the admin API key dev made before, read from " + filepath.Join(a.cfg.DataDir, devAdminKeyFile) + ":"
	}
	fmt.Fprintf(w, `
tokenbroker dev is running on SQLite in %s, with the demo provider %q.

%s
  %s

1. Open this link in your browser to connect the demo account. Pick any user, then press Approve:
  %s

2. Fetch the token as a platform would:
  curl -H 'Authorization: Bearer %s' %s/api/v1/users/%s/providers/%s/token

   You can also use the CLI:
  TOKENBROKER_API_KEY=%s go run ./cmd/tokenbroker token get --url %s --user %s --provider %s

3. See the link, its history and the audit log in the admin console (sign in with the key above):
  %s/admin/

The providers are listed at %s/api/v1/providers (send the key), the metrics are at %s/metrics,
and the demo provider's counters are at %s. Press Ctrl-C to stop.
`, a.cfg.DataDir, devProviderID, keyNote, plain, connectURL, plain, base, user, devProviderID,
		plain, base, user, devProviderID, base, base, base, idp.Endpoints().Stats)
	return nil
}
