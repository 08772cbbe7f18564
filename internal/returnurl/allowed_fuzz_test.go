package returnurl_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/internal/returnurl"
)

// FuzzReturnURLAllowed feeds the return URL check (the one rule against
// open redirects, used by the API and the connect pages) any URL against a
// fuzzed allow-list entry.
// Whatever it accepts must be a URL a browser reads the way the check did:
// an absolute http(s) URL without user info, backslashes, control
// characters or dot segments, whose origin is the entry's and whose path
// is the entry's path or below it. Accepting is also stable: the same
// answer for the same input, and never for a URL no entry allows.
func FuzzReturnURLAllowed(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw, entry string) {
		allowed := returnurl.Allowed(raw, []string{entry})
		if allowed != returnurl.Allowed(raw, []string{entry}) {
			t.Fatal("two answers for one input")
		}
		if returnurl.Allowed(raw, nil) {
			t.Fatalf("%q allowed by an empty allow-list", raw)
		}
		if list, err := returnurl.Parse([]string{entry}); err == nil && list.Allows(raw) != allowed {
			t.Fatalf("Parse(%q).Allows(%q) = %v, Allowed = %v", entry, raw, !allowed, allowed)
		}
		if !allowed {
			return
		}
		if strings.ContainsAny(raw, "\\ \t\r\n\x00\x7f") {
			t.Fatalf("allowed %q holds a backslash, space or control character", raw)
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("allowed %q does not parse: %v", raw, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil || u.Opaque != "" {
			t.Fatalf("allowed %q: scheme %q host %q user %v opaque %q", raw, u.Scheme, u.Host, u.User, u.Opaque)
		}
		if !strings.HasPrefix(raw[len(u.Scheme):], "://") {
			t.Fatalf("allowed %q is not in the scheme://host form", raw)
		}
		for _, seg := range strings.Split(u.Path, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("allowed %q has a dot segment", raw)
			}
		}
		e, err := url.Parse(entry)
		if err != nil {
			t.Fatalf("an entry %q that does not parse allowed %q", entry, raw)
		}
		if !strings.EqualFold(u.Hostname(), e.Hostname()) || !strings.EqualFold(u.Scheme, e.Scheme) {
			t.Fatalf("%q allowed by %q of another origin", raw, entry)
		}
		if port(u) != port(e) {
			t.Fatalf("%q allowed by %q on another port", raw, entry)
		}
		ep := e.Path
		if ep == "" {
			ep = "/"
		}
		p := u.Path
		if p == "" {
			p = "/"
		}
		if p != ep && !strings.HasPrefix(p, strings.TrimSuffix(ep, "/")+"/") {
			t.Fatalf("%q allowed by %q outside its path", raw, entry)
		}
		// Adding the same entry twice, or another one, never takes an
		// allowance away.
		if !returnurl.Allowed(raw, []string{"https://other.example", entry, entry}) {
			t.Fatalf("%q allowed by [%q] but not by a longer list", raw, entry)
		}
	})
}

// port is u's port with the scheme's default filled in.
func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return strings.TrimLeft(p, "0")
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}
