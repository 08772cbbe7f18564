package httpapitest

import (
	"fmt"
	"os"

	"go.uber.org/goleak"
)

// AfterRun ends the TestMain of a package whose tests log into logs: when
// the tests passed (code 0), the package fails if a captured line holds a
// secret or a goroutine of it is still running. It returns the exit code
// for os.Exit.
func AfterRun(code int, logs *LogCapture) int {
	if code != 0 {
		return code
	}
	if report := logs.Report(); len(report) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d log lines hold secrets:\n", len(report))
		for _, l := range report {
			fmt.Fprintln(os.Stderr, "  ", l)
		}
		return 1
	}
	if err := goleak.Find(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: goroutine leak:", err)
		return 1
	}
	return 0
}
