// Command tokenbroker keeps users' OAuth2 links to external providers and
// hands a valid access token to any internal caller that asks. See the
// README for the quick start and `tokenbroker help` for the subcommands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tokenbroker/tokenbroker/provider"
)

// commands lists the subcommand constructors. Each subcommand lives in its
// own file and adds itself here from an init function.
var commands []func() *cobra.Command

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the exit code. Errors are
// printed as one line, never a stack trace.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if isAskpassPrompt(args) {
		return runAskpass(ctx, args[0], stdout, stderr, getenvFrom) // GIT_ASKPASS; see git-credential
	}
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(stderr, "tokenbroker:", ee.msg)
			}
			return ee.code
		}
		fmt.Fprintln(stderr, "tokenbroker:", err)
		return 1
	}
	return 0
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "tokenbroker",
		Short: "Keeps users' OAuth2 links and hands out valid access tokens",
		Long: `tokenbroker keeps users' OAuth2 links to external providers and hands a valid
access token to any internal caller that asks, refreshing each token exactly
once per generation across all replicas.

Provider kinds: ` + strings.Join(provider.Kinds(), ", ") + `
(see docs/providers.md). Start with "tokenbroker dev" for a first look.`,
		Example: `  tokenbroker dev
  tokenbroker serve --config tokenbroker.yaml
  tokenbroker apikeys create --name admin --scopes admin`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, c := range commands {
		root.AddCommand(c())
	}
	return root
}

// exitError carries an exit code and a one-line message.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// exitf returns an error that makes the command exit with code after
// printing one line.
func exitf(code int, format string, args ...any) error {
	return &exitError{code: code, msg: fmt.Sprintf(format, args...)}
}
