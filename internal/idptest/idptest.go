// Package idptest configures providers against a fakeidp server: the
// provider setup the tests of several packages (httpapi, web, refresh)
// share instead of each spelling it out.
package idptest

import (
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/provider"
)

// OAuth2 returns the configuration of a generic oauth2 provider named id
// that speaks to every endpoint of idp (authorize, token, device,
// userinfo as the validate URL, revoke) as idp's client.
// Callers adjust the fields their test needs.
func OAuth2(idp *fakeidp.Server, id string) provider.ProviderConfig {
	ep, cfg := idp.Endpoints(), idp.Config()
	return provider.ProviderConfig{
		ID: id, Kind: provider.KindOAuth2,
		ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
		AuthURL: ep.Authorize, TokenURL: ep.Token, DeviceURL: ep.DeviceAuthorization,
		ValidateURL: ep.Userinfo, RevokeURL: ep.Revoke,
	}
}
