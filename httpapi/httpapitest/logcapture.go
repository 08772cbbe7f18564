// Package httpapitest holds test helpers for the HTTP API: a log handler
// that captures every line so tests can assert that no secret was ever
// logged, and a complete, real test environment (store, provider, fake
// identity provider, API server) to run requests against.
package httpapitest

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// LogCapture is a [slog.Handler] that keeps every record, rendered as a
// JSON line with all its attributes and groups, and optionally passes it on
// to another handler. It is safe for concurrent use; handlers derived with
// WithAttrs and WithGroup share the capture.
type LogCapture struct {
	shared *captureShared
	h      slog.Handler // renders into shared.buf
}

type captureShared struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	lines   []string
	notify  []chan string
	secrets []string
}

// NewLogCapture returns a capture that records every level.
func NewLogCapture() *LogCapture {
	sh := &captureShared{}
	return &LogCapture{shared: sh, h: slog.NewJSONHandler(&sh.buf, &slog.HandlerOptions{Level: slog.LevelDebug})}
}

// Logger returns a logger writing to c.
func (c *LogCapture) Logger() *slog.Logger { return slog.New(c) }

// Enabled implements [slog.Handler]: every level is captured.
func (c *LogCapture) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements [slog.Handler].
func (c *LogCapture) Handle(ctx context.Context, r slog.Record) error {
	sh := c.shared
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.buf.Reset()
	if err := c.h.Handle(ctx, r); err != nil {
		return err
	}
	line := strings.TrimRight(sh.buf.String(), "\n")
	sh.lines = append(sh.lines, line)
	for _, ch := range sh.notify {
		select {
		case ch <- line:
		default:
		}
	}
	return nil
}

// WithAttrs implements [slog.Handler].
func (c *LogCapture) WithAttrs(as []slog.Attr) slog.Handler {
	return &LogCapture{shared: c.shared, h: c.h.WithAttrs(as)}
}

// WithGroup implements [slog.Handler].
func (c *LogCapture) WithGroup(name string) slog.Handler {
	return &LogCapture{shared: c.shared, h: c.h.WithGroup(name)}
}

// Lines returns a copy of every line captured so far.
func (c *LogCapture) Lines() []string {
	c.shared.mu.Lock()
	defer c.shared.mu.Unlock()
	return append([]string(nil), c.shared.lines...)
}

// Drain returns the lines captured so far and forgets them, so that a
// long run (a fuzz target) can check each request's lines without keeping
// them all. Lines drained are not seen by [LogCapture.Leaks] or
// [LogCapture.Report].
func (c *LogCapture) Drain() []string {
	c.shared.mu.Lock()
	defer c.shared.mu.Unlock()
	lines := c.shared.lines
	c.shared.lines = nil
	return lines
}

// Watch returns a channel receiving each line captured from now on
// (lines are dropped if the channel's buffer of 64 is full).
func (c *LogCapture) Watch() <-chan string {
	ch := make(chan string, 64)
	c.shared.mu.Lock()
	c.shared.notify = append(c.shared.notify, ch)
	c.shared.mu.Unlock()
	return ch
}

// AddSecret registers values that must never appear in any captured line
// (tokens, API keys, key secrets, device codes). Empty values are ignored.
func (c *LogCapture) AddSecret(secrets ...string) {
	c.shared.mu.Lock()
	defer c.shared.mu.Unlock()
	for _, s := range secrets {
		if s != "" {
			c.shared.secrets = append(c.shared.secrets, s)
		}
	}
}

// Leaks returns the captured lines that contain a registered secret or one
// of extra, with the secret masked. Empty means no leak.
func (c *LogCapture) Leaks(extra ...string) []string {
	c.shared.mu.Lock()
	defer c.shared.mu.Unlock()
	secrets := append(append([]string(nil), c.shared.secrets...), extra...)
	var leaks []string
	for _, line := range c.shared.lines {
		for _, s := range secrets {
			if s != "" && strings.Contains(line, s) {
				leaks = append(leaks, strings.ReplaceAll(line, s, "<SECRET:"+mask(s)+">"))
			}
		}
	}
	return leaks
}

// SecretMarkers are substrings that start tokenbroker API keys and the
// fake identity provider's tokens, codes and device codes, and the
// Authorization header's scheme: none may appear in a log line.
var SecretMarkers = []string{"tbk_", "fakeidp_at_", "fakeidp_rt_", "fakeidp_dc_", "fakeidp_ac_", "Bearer "}

// Report returns one message per captured line that holds a registered
// secret, one of extra, or one of [SecretMarkers]. Empty means clean.
func (c *LogCapture) Report(extra ...string) []string {
	out := c.Leaks(extra...)
	for _, line := range c.Lines() {
		for _, marker := range SecretMarkers {
			if i := strings.Index(line, marker); i >= 0 {
				// Print the line only up to the marker: the rest is the secret.
				out = append(out, "contains "+marker+": "+line[:i]+marker+"***")
			}
		}
	}
	return out
}

// AssertNoSecrets fails tb if a registered secret, one of extra, or one of
// [SecretMarkers] appears in any captured line. It also fails when no line
// was captured at all: then the logger was not wired and the check would
// pass vacuously.
func (c *LogCapture) AssertNoSecrets(tb testing.TB, extra ...string) {
	tb.Helper()
	if len(c.Lines()) == 0 {
		tb.Errorf("no log line captured: the secret check would pass vacuously")
	}
	for _, l := range c.Report(extra...) {
		tb.Errorf("secret in log line: %s", l)
	}
}

func mask(s string) string {
	if len(s) <= 6 {
		return "***"
	}
	return s[:6] + "***"
}
