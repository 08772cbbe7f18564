package configfile_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/internal/configfile"
)

type doc struct {
	Name  string   `yaml:"name"`
	Items []string `yaml:"items"`
}

func TestDecode(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     doc
		err      string
	}{
		{"fields", "name: a\nitems: [x, y]\n", doc{Name: "a", Items: []string{"x", "y"}}, ""},
		{"empty", " \n\t\n", doc{Name: "kept"}, ""},
		{"comment only", "# nothing\n", doc{Name: "kept"}, ""},
		{"unknown field", "name: a\nnmae: b\n", doc{}, "field nmae not found"},
		{"not YAML", "name: [\n", doc{}, "yaml:"},
		{"too large", "name: " + strings.Repeat("a", configfile.MaxBytes) + "\n", doc{}, "larger than 1048576 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := doc{Name: "kept"}
			err := configfile.Decode(strings.NewReader(c.in), &got)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("Decode = %v, want an error containing %q", err, c.err)
				}
				return
			}
			if err != nil || got.Name != c.want.Name || strings.Join(got.Items, ",") != strings.Join(c.want.Items, ",") {
				t.Fatalf("Decode = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

type fieldError struct{ field string }

func (e *fieldError) Error() string { return "entry #1: " + e.field + ": bad" }

type otherError struct{}

func (e *otherError) Error() string { return "other" }

func TestValidationError(t *testing.T) {
	var err error = &configfile.ValidationError[*fieldError]{Section: "thing", Errors: []*fieldError{{"a"}, {"b"}}}
	if want := "invalid thing configuration:\n  entry #1: a: bad\n  entry #1: b: bad"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
	var fe *fieldError
	if !errors.As(err, &fe) || fe.field != "a" {
		t.Errorf("errors.As finds %v, want the first field error", fe)
	}
	// Each section's instance is its own type: errors.As on a joined
	// error finds each section's list.
	joined := errors.Join(err, &configfile.ValidationError[*otherError]{Section: "other", Errors: []*otherError{{}}})
	var mine *configfile.ValidationError[*fieldError]
	var other *configfile.ValidationError[*otherError]
	if !errors.As(joined, &mine) || !errors.As(joined, &other) || len(mine.Errors) != 2 || other.Section != "other" {
		t.Errorf("errors.As on the joined sections: %v, %v", mine, other)
	}
}

func TestCheckURL(t *testing.T) {
	for _, c := range []struct {
		url      string
		insecure bool
		want     string
	}{
		{"https://idp.example/token", false, ""},
		{"http://127.0.0.1:8080/token", false, ""},
		{"http://[::1]/token", false, ""},
		{"http://localhost/token", false, ""},
		{"http://idp.example/token", false, "must use https"},
		{"http://idp.example/token", true, ""},
		{"https://u:p@idp.example/token", false, "must not contain credentials"},
		{"https://idp.example/token#x", false, "must not contain a fragment"},
		{"ftp://idp.example/token", false, "scheme must be https"},
		{"/token", false, "not an absolute URL"},
		{"https:///token", false, "not an absolute URL"},
		{"%zz", false, "not an absolute URL"},
	} {
		got := configfile.CheckURL(c.url, c.insecure)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("CheckURL(%q, %v) = %q, want %q", c.url, c.insecure, got, c.want)
		}
		if strings.Contains(got, "p@") {
			t.Errorf("CheckURL(%q) shows the credentials: %q", c.url, got)
		}
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	if err := os.WriteFile(path, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := configfile.ReadFile(path); err != nil || string(b) != "s3cret\n" {
		t.Errorf("ReadFile = %q, %v", b, err)
	}
	_, err := configfile.ReadFile(filepath.Join(dir, "missing"))
	if !errors.Is(err, os.ErrNotExist) || strings.Contains(err.Error(), dir) {
		t.Errorf("ReadFile of a missing file = %v, want the cause without the path", err)
	}
}

func TestSplitList(t *testing.T) {
	for in, want := range map[string][]string{
		"":                 nil,
		"a":                {"a"},
		"a,b c":            {"a", "b", "c"},
		" a ,, b\n\tc\r\n": {"a", "b", "c"},
	} {
		if got := configfile.SplitList(in); !slices.Equal(got, want) {
			t.Errorf("SplitList(%q) = %q, want %q", in, got, want)
		}
	}
}
