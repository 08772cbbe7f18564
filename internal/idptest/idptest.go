// Package idptest starts fakeidp servers and configures providers against
// them: the setup the tests of several packages (httpapi, web, refresh,
// identity, provider, cmd) share instead of each spelling it out.
package idptest

import (
	"testing"

	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/provider"
)

// MustStart starts a fakeidp server with cfg, closed when tb ends.
func MustStart(tb testing.TB, cfg fakeidp.Config) *fakeidp.Server {
	tb.Helper()
	s, err := fakeidp.Start(cfg)
	if err != nil {
		tb.Fatalf("start fakeidp: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

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
