package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newMigrateCmd) }

func newMigrateCmd() *cobra.Command {
	var (
		databaseURL, dataDir string
		status               bool
	)
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the database schema migrations",
		Long: `migrate applies the schema migrations embedded in this binary to the database
and prints the resulting schema version. serve migrates at start too; run
migrate on its own to upgrade the schema ahead of a rollout. With --status it
only prints the current and the latest version.

A database whose schema is newer than this binary is refused: upgrade
tokenbroker instead.`,
		Example: `  tokenbroker migrate
  tokenbroker migrate --status
  tokenbroker migrate --database-url postgres://tokenbroker@db.internal/tokenbroker
  TOKENBROKER_DATABASE_URL=postgres://tokenbroker@db.internal/tokenbroker tokenbroker migrate`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			h, err := openStore(ctx, databaseURL, dataDir)
			if err != nil {
				return exitf(1, "%v", err)
			}
			defer h.Close()
			out := cmd.OutOrStdout()
			if status {
				cur, latest, err := h.SchemaVersion(ctx)
				if err != nil {
					return exitf(1, "%v", err)
				}
				state := "up to date"
				if cur < latest {
					state = fmt.Sprintf("%d migration(s) pending; run tokenbroker migrate", latest-cur)
				}
				fmt.Fprintf(out, "%s: schema version %d, latest %d (%s)\n", h.Describe(), cur, latest, state)
				return nil
			}
			before, _, err := h.SchemaVersion(ctx)
			if err != nil {
				return exitf(1, "%v", err)
			}
			if err := h.Migrate(ctx); err != nil {
				return exitf(1, "%v", err)
			}
			cur, _, err := h.SchemaVersion(ctx)
			if err != nil {
				return exitf(1, "%v", err)
			}
			if cur == before {
				fmt.Fprintf(out, "%s: schema version %d, already up to date\n", h.Describe(), cur)
			} else {
				fmt.Fprintf(out, "%s: migrated from schema version %d to %d\n", h.Describe(), before, cur)
			}
			return nil
		},
	}
	f := cmd.Flags()
	bindDBFlags(f, &databaseURL, &dataDir, getenvFrom)
	f.BoolVar(&status, "status", false, "print the current and latest schema version without migrating")
	return cmd
}
