package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/internal/testenv"
)

// TestBinaryHasNoTestMachinery: the tokenbroker binary links no package
// testing (nor pgtest or goleak), and no source file it is built from
// holds a TOKENBROKER_TEST_ variable or a refresh strategy switch; the test
// switches live in _test.go files only.
func TestBinaryHasNoTestMachinery(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		testenv.Missing(t, "the go command is not on PATH")
	}
	out, err := exec.Command(gobin, "list", "-deps", "-f", "{{.ImportPath}}\t{{.Dir}}\t{{join .GoFiles \",\"}}\t{{with .Module}}{{.Path}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "\t")
		path, dir, files, module := f[0], f[1], f[2], f[3]
		switch {
		case path == "testing" || strings.HasPrefix(path, "testing/"),
			strings.HasSuffix(path, "/pgtest"), strings.HasPrefix(path, "go.uber.org/goleak"):
			t.Errorf("the binary links %s", path)
		}
		if !strings.HasPrefix(module, "github.com/tokenbroker/tokenbroker") {
			continue
		}
		for _, name := range strings.Split(files, ",") {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			for _, bad := range []string{"TOKENBROKER_TEST_", "TOKENBROKER_REFRESH_STRATEGY", "refresh-strategy", "test-fault"} {
				if strings.Contains(string(b), bad) {
					t.Errorf("%s/%s holds %q", path, name, bad)
				}
			}
		}
	}
}
