package httpapi

import (
	"net/http"

	"github.com/tokenbroker/tokenbroker/apiv1"
)

// listProviders lists the configured providers the caller's key may act
// on, without secrets. Any valid key may ask.
func (s *Server) listProviders(w http.ResponseWriter, r *http.Request, k *caller) error {
	out := apiv1.ProviderList{Providers: []apiv1.Provider{}}
	for _, p := range s.providers.List() {
		if k.AllowsProvider(p.ID()) {
			info := p.Info()
			out.Providers = append(out.Providers, apiv1.Provider{
				ID: info.ID, Kind: info.Kind, DisplayName: info.DisplayName, Scopes: info.Scopes,
				SupportsDevice: info.SupportsDevice, SupportsRevoke: info.SupportsRevoke, Hosts: info.Hosts,
			})
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
