package web

import (
	"net"
	"net/url"
	"strings"

	"github.com/tokenbroker/tokenbroker"
)

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
			"web: return URL allow-list entry %q: want an absolute http(s) URL without user info, query or fragment", tokenbroker.Truncate(s, 100))
	}
	p := u.Path
	if p == "" {
		p = "/"
	}
	return allowEntry{origin: origin(u), path: p}, nil
}

// ReturnURLAllowed reports whether raw may be used as a connect session's
// return URL under allowList (entries as in [Config.ReturnURLAllowList]).
// It is the one rule for both sides: the API checks it when a session is
// created and the callback checks it again before redirecting, so the
// connect flow is never an open redirect.
//
// raw must be an absolute http or https URL with a host, without user info,
// backslashes, control characters, spaces, encoded slashes, backslashes or
// dots in its path, or "." and ".." path segments; its origin (scheme, host
// and port, compared case-insensitively with default ports normalized) must
// equal an entry's, and its path must equal the entry's path or lie under
// it ("/app" allows "/app" and "/app/x", not "/application").
func ReturnURLAllowed(raw string, allowList []string) bool {
	for _, s := range allowList {
		e, err := parseAllowEntry(s)
		if err == nil && e.allows(raw) {
			return true
		}
	}
	return false
}

// returnURLAllowed is [ReturnURLAllowed] against the parsed allow-list.
func (h *Handler) returnURLAllowed(raw string) bool {
	for _, e := range h.allow {
		if e.allows(raw) {
			return true
		}
	}
	return false
}

func (e allowEntry) allows(raw string) bool {
	u, ok := parseStrictURL(raw)
	if !ok || origin(u) != e.origin {
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

// origin returns scheme://host[:port] of u in lower case, without a
// default port.
func origin(u *url.URL) string {
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
