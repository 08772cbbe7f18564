package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/tokenbroker/tokenbroker/internal/pgtest"
)

// execMainEnv, when set to 1, makes the test binary act as the tokenbroker
// binary, so tests start real `tokenbroker serve` processes without a
// separate build step.
const execMainEnv = "TOKENBROKER_TEST_EXEC_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(execMainEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	selfEnv = func(extra ...string) []string {
		return append(append(os.Environ(), execMainEnv+"=1"), extra...)
	}
	os.Exit(pgtest.Main(m, func() error { return goleak.Find() }))
}
