package crypt_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/tokenbroker/tokenbroker/internal/pgtest"
)

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, func() error { return goleak.Find() }))
}
