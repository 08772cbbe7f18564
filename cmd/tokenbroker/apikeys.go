package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apikey"
	"github.com/tokenbroker/tokenbroker/apiv1"
	"github.com/tokenbroker/tokenbroker/httpapi"
)

func init() { commands = append(commands, newAPIKeysCmd) }

// apikeysDBFlags are the database flags of the commands that work on the database
// directly.
type apikeysDBFlags struct {
	databaseURL, dataDir string
}

func (f *apikeysDBFlags) bind(cmd *cobra.Command) {
	fs := cmd.PersistentFlags()
	bindDBFlags(fs, &f.databaseURL, &f.dataDir, getenvFrom)
}

func newAPIKeysCmd() *cobra.Command {
	db := &apikeysDBFlags{}
	cmd := &cobra.Command{
		Use:   "apikeys",
		Short: "Create, list and revoke API keys (on the database directly)",
		Long: `Create, list and revoke API keys. These commands work on the database directly,
not through the API, so the first admin key can be made before anything else.
A running server notices a revocation made here within its key cache TTL (10s).`,
		Example: `  tokenbroker apikeys create --name admin --scopes admin
  tokenbroker apikeys list
  tokenbroker apikeys revoke 3`,
	}
	db.bind(cmd)
	cmd.AddCommand(newAPIKeysCreateCmd(db), newAPIKeysListCmd(db), newAPIKeysRevokeCmd(db))
	return cmd
}

// withAPIKeyStore opens and migrates the database, runs fn and closes it.
func withAPIKeyStore(ctx context.Context, db *apikeysDBFlags, fn func(tokenbroker.Store) error) error {
	h, err := openStore(ctx, db.databaseURL, db.dataDir)
	if err != nil {
		return exitf(1, "open database: %s", oneLine(err))
	}
	defer h.Close()
	if err := h.Migrate(ctx); err != nil {
		return exitf(1, "migrate database: %s", oneLine(err))
	}
	return fn(h.Store())
}

func newAPIKeysCreateCmd(db *apikeysDBFlags) *cobra.Command {
	var name string
	var scopes, users, providers []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "create --name N --scopes a,b [--users u1,u2] [--providers p]",
		Short: "Create an API key and print it once",
		Long: `Create an API key and print it. The key is shown only this once: the database
keeps its prefix and a hash of its secret. Scopes: ` + strings.Join(tokenbroker.AllScopes, ", ") + `
(admin implies the others). --users and --providers restrict the key to those
users and providers.`,
		Example: `  tokenbroker apikeys create --name admin --scopes admin
  tokenbroker apikeys create --name ci --scopes tokens:read --providers github
  tokenbroker apikeys create --name platform --scopes tokens:read,links:read,links:write --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			k, plaintext, err := apikey.New(nil, name, scopes, users, providers)
			if err != nil {
				return exitf(2, "%s", tokenbroker.ErrorMessage(err))
			}
			return withAPIKeyStore(cmd.Context(), db, func(st tokenbroker.Store) error {
				created, err := st.CreateAPIKey(cmd.Context(), k)
				if err != nil {
					return exitf(1, "create key: %s", oneLine(err))
				}
				recordCLIAudit(cmd.Context(), cmd.ErrOrStderr(), st, tokenbroker.AuditAPIKeyCreate,
					"created key "+created.Prefix+" ("+strings.Join(created.Scopes, ",")+")")
				out := cmd.OutOrStdout()
				if asJSON {
					return printAPIKeysJSON(out, apiv1.CreatedAPIKey{APIKey: httpapi.NewAPIKeyInfo(created), Key: plaintext})
				}
				fmt.Fprintf(out, "Created API key %d (%s, prefix %s) with scopes %s, %s.\n", created.ID, created.Name, created.Prefix,
					strings.Join(created.Scopes, ","), restrictions(created))
				fmt.Fprintln(out, "Store it now; it is not shown again:")
				fmt.Fprintln(out)
				fmt.Fprintf(out, "  %s\n", plaintext)
				return nil
			})
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&name, "name", "", "name of the key, for people (required)")
	fs.StringSliceVar(&scopes, "scopes", nil, "comma-separated scopes (required): "+strings.Join(tokenbroker.AllScopes, ", "))
	fs.StringSliceVar(&users, "users", nil, "restrict the key to these user ids")
	fs.StringSliceVar(&providers, "providers", nil, "restrict the key to these provider ids")
	fs.BoolVar(&asJSON, "json", false, "print a JSON object")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("scopes")
	return cmd
}

func newAPIKeysListCmd(db *apikeysDBFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List API keys (never their secrets)",
		Example: "  tokenbroker apikeys list\n  tokenbroker apikeys list --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAPIKeyStore(cmd.Context(), db, func(st tokenbroker.Store) error {
				keys, err := st.ListAPIKeys(cmd.Context())
				if err != nil {
					return exitf(1, "list keys: %s", oneLine(err))
				}
				out := cmd.OutOrStdout()
				if asJSON {
					rows := make([]apiv1.APIKey, 0, len(keys))
					for _, k := range keys {
						rows = append(rows, httpapi.NewAPIKeyInfo(k))
					}
					return printAPIKeysJSON(out, rows)
				}
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tPREFIX\tNAME\tSCOPES\tUSERS\tPROVIDERS\tCREATED\tREVOKED")
				for _, k := range keys {
					revoked := "-"
					if k.Revoked() {
						revoked = k.RevokedAt.UTC().Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Prefix, k.Name,
						strings.Join(k.Scopes, ","), apikeysOrAny(k.Users), apikeysOrAny(k.Providers),
						k.CreatedAt.UTC().Format(time.RFC3339), revoked)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

func newAPIKeysRevokeCmd(db *apikeysDBFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke an API key",
		Example: "  tokenbroker apikeys revoke 3",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := tokenbroker.ParseAPIKeyID(args[0])
			if err != nil {
				return exitf(2, "invalid key id %q: want the numeric ID shown by `tokenbroker apikeys list`", tokenbroker.Truncate(args[0], 40))
			}
			return withAPIKeyStore(cmd.Context(), db, func(st tokenbroker.Store) error {
				if err := st.RevokeAPIKey(cmd.Context(), id); err != nil {
					if tokenbroker.IsNotFound(err) {
						return exitf(1, "no API key with id %d", id)
					}
					return exitf(1, "revoke key: %s", oneLine(err))
				}
				recordCLIAudit(cmd.Context(), cmd.ErrOrStderr(), st, tokenbroker.AuditAPIKeyRevoke, "revoked key id "+strconv.FormatInt(id, 10))
				fmt.Fprintf(cmd.OutOrStdout(), "Revoked API key %d. Running servers stop accepting it within %s.\n", id, httpapi.DefaultAPIKeyCacheTTL)
				return nil
			})
		},
	}
}

// recordCLIAudit writes one audit event at once (the CLI has no batcher).
// A failure is reported but does not undo the change.
func recordCLIAudit(ctx context.Context, stderr io.Writer, st tokenbroker.AuditStore, action, detail string) {
	ev := tokenbroker.AuditEvent{Time: time.Now(), Actor: "cli", Action: action, Outcome: "ok", Detail: detail}
	if err := st.AppendAudit(ctx, []tokenbroker.AuditEvent{ev}); err != nil {
		fmt.Fprintf(stderr, "tokenbroker: warning: audit event not written: %s\n", oneLine(err))
	}
}

func printAPIKeysJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// restrictions says, in words, which users and providers a key may act on.
func restrictions(k *tokenbroker.APIKey) string {
	users, providers := "any user", "any provider"
	if len(k.Users) > 0 {
		users = "users " + strings.Join(k.Users, ",")
	}
	if len(k.Providers) > 0 {
		providers = "providers " + strings.Join(k.Providers, ",")
	}
	return "for " + users + " and " + providers
}

func apikeysOrAny(s []string) string {
	if len(s) == 0 {
		return "*"
	}
	return strings.Join(s, ",")
}
