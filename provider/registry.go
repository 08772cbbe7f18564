package provider

import (
	"context"
	"net/url"
	"strings"

	"github.com/tokenbroker/tokenbroker"
)

// Registry holds the configured providers. It implements
// [tokenbroker.Providers] and is safe for concurrent use (it is immutable).
type Registry struct {
	list []*oauthProvider
	byID map[string]*oauthProvider
}

var _ tokenbroker.Providers = (*Registry)(nil)

// NewRegistry validates cfg and builds every provider with [New]; for oidc
// providers that means discovery with ctx unless opts.LazyDiscovery is set.
func NewRegistry(ctx context.Context, cfg *Config, opts Options) (*Registry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Registry{byID: map[string]*oauthProvider{}}
	for _, pc := range cfg.Providers {
		p, err := newProvider(ctx, pc, opts)
		if err != nil {
			return nil, err
		}
		r.list = append(r.list, p)
		r.byID[p.ID()] = p
	}
	return r, nil
}

// Provider implements [tokenbroker.Providers].
func (r *Registry) Provider(id string) (tokenbroker.Provider, error) {
	if p, ok := r.byID[id]; ok {
		return p, nil
	}
	return nil, tokenbroker.Errorf(tokenbroker.ENOTFOUND, "unknown provider %q", id)
}

// List implements [tokenbroker.Providers]: the providers in configuration
// order.
func (r *Registry) List() []tokenbroker.Provider {
	out := make([]tokenbroker.Provider, len(r.list))
	for i, p := range r.list {
		out[i] = p
	}
	return out
}

// ForHost returns the first provider, in configuration order, whose hosts
// expression matches host. host may be a host name ("github.com"), a
// host:port, a repository path ("github.com/org/repo") or a URL
// ("https://gitlab.corp:8443/group/project.git").
func (r *Registry) ForHost(host string) (tokenbroker.Provider, bool) {
	h := hostOf(host)
	if h == "" {
		return nil, false
	}
	for _, p := range r.list {
		if p.serves(h) {
			return p, true
		}
	}
	return nil, false
}

// hostOf extracts the lower-cased host (with port, if any) from a host, a
// path that starts with a host, or a URL.
func hostOf(s string) string {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return ""
		}
		return strings.ToLower(u.Host)
	}
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndex(s, "@"); i >= 0 { // git@github.com:org/repo
		s = s[i+1:]
		if h, _, ok := strings.Cut(s, ":"); ok {
			s = h
		}
	}
	return strings.ToLower(s)
}
