package prefix

import (
	"testing"
	"unicode/utf8"
)

func TestUpper(t *testing.T) {
	for _, tt := range []struct {
		p, want string
		ok      bool
	}{
		{"", "", false},
		{"a", "b", true},
		{"user-1", "user-2", true},
		{"az", "a{", true},
		{"é", "ê", true},
		{"a\uD7FF", "a\uE000", true},
		{"a" + string(utf8.MaxRune), "b", true},
		{string(utf8.MaxRune), "", false},
	} {
		got, ok := Upper(tt.p)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Upper(%q) = %q, %v; want %q, %v", tt.p, got, ok, tt.want, tt.ok)
		}
		if ok {
			for _, s := range []string{tt.p, tt.p + "\x00", tt.p + "zz", tt.p + string(utf8.MaxRune) + "x"} {
				if !(tt.p <= s && s < got) {
					t.Errorf("%q not in [%q, %q)", s, tt.p, got)
				}
			}
		}
	}
}
