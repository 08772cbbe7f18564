// Package returnurl is the one rule for where a connect session may send
// the browser back: the API (httpapi) checks it when a session is created,
// the connect pages (web) check it again before redirecting, and serve
// checks the allow-list's entries at start-up, so the connect flow is never
// an open redirect.
package returnurl

import (
	"net"
	"net/url"
	"strings"

	"github.com/tokenbroker/tokenbroker"
)

// AllowList is a parsed return URL allow-list.
type AllowList struct{ entries []allowEntry }

// Parse parses an allow-list: entries are origins
// ("https://app.example.com") or URL prefixes
// ("https://app.example.com/settings/"), absolute http(s) URLs without
// user info, query or fragment.
func Parse(list []string) (AllowList, error) {
	var a AllowList
	for _, s := range list {
		e, err := parseAllowEntry(s)
		if err != nil {
			return AllowList{}, err
		}
		a.entries = append(a.entries, e)
	}
	return a, nil
}

// Allows reports whether raw may be a return URL under a (see [Allowed]).
func (a AllowList) Allows(raw string) bool {
	for _, e := range a.entries {
		if e.allows(raw) {
			return true
		}
	}
	return false
}

// allowEntry is one parsed entry of the return URL allow-list.
type allowEntry struct {
	origin string // scheme://host[:port], lower case, default port dropped
	path   string // decoded path prefix, "/" at least
}

// parseAllowEntry parses an allow-list entry: an absolute http(s) URL with
// a host, without user info, query or fragment.
func parseAllowEntry(s string) (allowEntry, error) {
	u, ok := parseStrictURL(s)
	if !ok || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return allowEntry{}, tokenbroker.Errorf(tokenbroker.EINVALID,
			"return URL allow-list entry %q: want an absolute http(s) URL without user info, query or fragment", tokenbroker.Truncate(s, 100))
	}
	p := u.Path
	if p == "" {
		p = "/"
	}
	return allowEntry{origin: Origin(u), path: p}, nil
}

// Allowed reports whether raw may be used as a connect session's return
// URL under allowList (entries as in [Parse]; a bad entry allows nothing).
//
// raw must be an absolute http or https URL with a host, without user info,
// backslashes, control characters, spaces, encoded slashes, backslashes or
// dots in its path, or "." and ".." path segments; its origin (scheme, host
// and port, compared case-insensitively with default ports normalized) must
// equal an entry's, and its path must equal the entry's path or lie under
// it ("/app" allows "/app" and "/app/x", not "/application").
func Allowed(raw string, allowList []string) bool {
	for _, s := range allowList {
		e, err := parseAllowEntry(s)
		if err == nil && e.allows(raw) {
			return true
		}
	}
	return false
}

func (e allowEntry) allows(raw string) bool {
	u, ok := parseStrictURL(raw)
	if !ok || Origin(u) != e.origin {
		return false
	}
	p := u.Path
	if p == "" {
		p = "/"
	}
	if p == e.path {
		return true
	}
	prefix := e.path
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return strings.HasPrefix(p, prefix)
}

// parseStrictURL parses s as an absolute http(s) URL and refuses every
// shape that browsers and net/url may read differently: backslashes
// (browsers treat them as slashes), control characters and spaces,
// scheme-relative and opaque forms, user info ("https://app@evil"), empty
// hosts, and paths with dot segments or encoded dots, slashes or
// backslashes (a prefix check on "/app/../admin" or "/app%2f..%2fadmin"
// would pass what the browser resolves elsewhere).
func parseStrictURL(s string) (*url.URL, bool) {
	if s == "" || len(s) > 2048 {
		return nil, false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || c == '\\' {
			return nil, false
		}
	}
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || u.User != nil || u.Host == "" {
		return nil, false
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, false
	}
	if !strings.HasPrefix(s[len(u.Scheme):], "://") {
		return nil, false
	}
	host := u.Hostname()
	if host == "" || strings.ContainsAny(host, "%@") {
		return nil, false
	}
	if port := u.Port(); port != "" {
		for _, c := range port {
			if c < '0' || c > '9' {
				return nil, false
			}
		}
	}
	lower := strings.ToLower(u.EscapedPath())
	if strings.Contains(lower, "%2e") || strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") {
		return nil, false
	}
	for seg := range strings.SplitSeq(u.Path, "/") {
		if seg == "." || seg == ".." {
			return nil, false
		}
	}
	return u, true
}

// Origin returns scheme://host[:port] of u in lower case, without a
// default port (RFC 6454 §4, as the allow-list compares them).
func Origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		return scheme + "://" + net.JoinHostPort(strings.Trim(host, "[]"), port)
	}
	return scheme + "://" + host
}
