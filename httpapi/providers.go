package httpapi

import (
	"net/http"

	"github.com/tokenbroker/tokenbroker"
)

// ProviderList is the body of GET /api/v1/providers.
type ProviderList struct {
	Providers []tokenbroker.ProviderInfo `json:"providers"`
}

// listProviders lists the configured providers the caller's key may act
// on, without secrets. Any valid key may ask.
func (s *Server) listProviders(w http.ResponseWriter, r *http.Request, k *caller) error {
	out := ProviderList{Providers: []tokenbroker.ProviderInfo{}}
	for _, p := range s.providers.List() {
		if k.AllowsProvider(p.ID()) {
			info := p.Info()
			if info.Scopes == nil {
				info.Scopes = []string{}
			}
			out.Providers = append(out.Providers, info)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
