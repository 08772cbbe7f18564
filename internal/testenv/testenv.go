// Package testenv is for tests that need something from the machine (a
// program, a server binary, a browser): without it they skip with one line
// saying what to install, and under CI=true, where everything is
// installed, they fail instead, so a CI run can never pass by skipping.
package testenv

import (
	"os"
	"testing"
)

// CI reports whether the tests run in CI (CI=true).
func CI() bool { return os.Getenv("CI") == "true" }

// Missing skips tb with the one-line message (say what to install), or
// fails it with the same message under CI=true.
func Missing(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if CI() {
		tb.Fatalf("CI=true: "+format, args...)
	}
	tb.Skipf(format, args...)
}
