package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tokenbroker/tokenbroker/webhook"
)

func init() { commands = append(commands, newWebhooksCmd) }

func newWebhooksCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "webhooks",
		Short: "Webhook helpers (configuration: docs/webhooks.md)",
		Long: `Webhooks are configured in the webhooks: section of the configuration file
(docs/webhooks.md); "tokenbroker providers check" validates it.`,
		Example: `  tokenbroker webhooks secret`,
		Args:    cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "secret",
		Short: "Print a new webhook signing secret (whsec_...)",
		Long: `secret prints a new random signing secret for a webhook endpoint: "whsec_" and the
base64 of 32 random bytes, the Standard Webhooks form. Put it in the endpoint's
secret_file and give the same secret to the receiver. To rotate, list the new
secret before the old one (separated by a space or a newline): tokenbroker then
signs with both until the old one is removed.`,
		Example: `  tokenbroker webhooks secret > /run/secrets/tokenbroker-webhook`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), webhook.NewSecret())
			return nil
		},
	})
	return cmd
}
