package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/pgtest"
	"github.com/tokenbroker/tokenbroker/refresh"
)

// execMainEnv, when set to 1, makes the test binary act as the tokenbroker
// binary, so tests start real `tokenbroker serve` processes without a
// separate build step.
const execMainEnv = "TOKENBROKER_TEST_EXEC_MAIN"

// hangBeforeCommitEnv, when set to 1 in a test binary acting as
// tokenbroker, makes the coordinator's lease holder hang after the
// provider answered and before its commit: a replica that dies in the
// window I2 cannot close. Only this test binary reads it; the tokenbroker
// binary has no such switch.
const hangBeforeCommitEnv = "TOKENBROKER_TEST_HANG_BEFORE_COMMIT"

// hangLogLine is what a replica with the hang fault logs when it hangs.
const hangLogLine = "test fault: hanging between the provider's answer and the commit"

func TestMain(m *testing.M) {
	if os.Getenv(execMainEnv) == "1" {
		if os.Getenv(hangBeforeCommitEnv) == "1" {
			configureRefresh = func(rc *refresh.Config, log *slog.Logger) {
				rc.Providers = hangAfterAnswer{rc.Providers, log}
			}
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(pgtest.Main(m, func() error { return goleak.Find() }))
}

// childEnv is the environment of a child process of the test binary that
// acts as tokenbroker, with extra on top.
func childEnv(extra ...string) []string {
	return append(append(os.Environ(), execMainEnv+"=1"), extra...)
}

// hangAfterAnswer is a provider registry whose providers, once a refresh
// was answered (the provider rotated the token), hang before handing the
// answer to the coordinator: the lease holder stops between the provider's
// answer and its commit.
type hangAfterAnswer struct {
	tokenbroker.Providers
	log *slog.Logger
}

func (h hangAfterAnswer) Provider(id string) (tokenbroker.Provider, error) {
	p, err := h.Providers.Provider(id)
	if err != nil {
		return nil, err
	}
	return hangingProvider{p, h.log}, nil
}

type hangingProvider struct {
	tokenbroker.Provider
	log *slog.Logger
}

func (p hangingProvider) Refresh(ctx context.Context, rt string) (*tokenbroker.Token, error) {
	tok, err := p.Provider.Refresh(ctx, rt)
	if err == nil {
		p.log.Warn(hangLogLine, "provider", p.ID())
		select {} // stands for a dead process; the test kills it
	}
	return tok, err
}
