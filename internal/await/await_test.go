package await_test

import (
	"testing"

	"github.com/tokenbroker/tokenbroker/internal/await"
)

func TestSignal(t *testing.T) {
	sent := make(chan struct{}, 1)
	sent <- struct{}{}
	await.Signal(t, "a sent value", sent)
	closed := make(chan struct{})
	close(closed)
	await.Signal(t, "a closed channel", closed)
}
