package provider

import (
	"context"
	"errors"
	"net/http"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/tokenbroker/tokenbroker"
)

// Discovery is what tokenbroker uses of an OpenID Provider's discovery
// document (OpenID Connect Discovery 1.0 §3, RFC 8414 §2).
type Discovery struct {
	Issuer                string   `json:"issuer"`
	AuthURL               string   `json:"authorization_endpoint"`
	TokenURL              string   `json:"token_endpoint"`
	DeviceURL             string   `json:"device_authorization_endpoint"`
	UserinfoURL           string   `json:"userinfo_endpoint"`
	RevocationURL         string   `json:"revocation_endpoint"`
	JWKSURL               string   `json:"jwks_uri"`
	TokenEndpointAuthMeth []string `json:"token_endpoint_auth_methods_supported"`
	ScopesSupported       []string `json:"scopes_supported"`
}

// Discover fetches issuer's discovery document with client (nil: a default
// client) and checks that it names the same issuer. It is what
// `tokenbroker providers check --online` runs for every oidc provider.
func Discover(ctx context.Context, issuer string, client *http.Client) (*Discovery, error) {
	_, d, err := discover(ctx, issuer, wrapClient(client))
	return d, err
}

func discover(ctx context.Context, issuer string, client *http.Client) (*oidc.Provider, *Discovery, error) {
	op, err := oidc.NewProvider(oidc.ClientContext(ctx, client), issuer)
	if err != nil {
		return nil, nil, err
	}
	d := &Discovery{}
	if err := op.Claims(d); err != nil {
		return nil, nil, err
	}
	if d.TokenURL == "" || d.AuthURL == "" {
		return nil, nil, errors.New("the discovery document lacks authorization_endpoint or token_endpoint")
	}
	return op, d, nil
}

// endpoints returns the provider's endpoints, discovering them first for
// kind oidc. Discovery runs once; a failure is not cached, so the next call
// tries again. A failure is a transient [*tokenbroker.ProviderError].
func (p *oauthProvider) endpoints(ctx context.Context) (endpoints, error) {
	p.mu.Lock()
	ep, ready := p.ep, p.ready
	p.mu.Unlock()
	if ready {
		return ep, nil
	}
	// discoverMu is held across discovery so that concurrent first calls
	// share one discovery request; it is never held across a token request,
	// so I1/I2 are unaffected.
	p.discoverMu.Lock()
	defer p.discoverMu.Unlock()
	p.mu.Lock()
	ep, ready = p.ep, p.ready
	p.mu.Unlock()
	if ready {
		return ep, nil
	}
	op, d, err := discover(ctx, p.pc.Issuer, p.client)
	if err != nil {
		pe := p.fail(err)
		pe.Code = "discovery_failed"
		if pe.Description == "" {
			pe.Description = "OpenID Connect discovery of " + redactURL(p.pc.Issuer) + " failed"
		}
		return endpoints{}, pe
	}
	// Configured URLs override discovered ones.
	ep = endpoints{
		auth:     orDefault(p.pc.AuthURL, d.AuthURL),
		token:    orDefault(p.pc.TokenURL, d.TokenURL),
		device:   orDefault(p.pc.DeviceURL, d.DeviceURL),
		validate: orDefault(p.pc.ValidateURL, d.UserinfoURL),
		revoke:   orDefault(p.pc.RevokeURL, d.RevocationURL),
		style:    p.authStyle(d.TokenEndpointAuthMeth),
	}
	p.mu.Lock()
	p.ep, p.ready = ep, true
	p.verifier = op.Verifier(&oidc.Config{ClientID: p.pc.ClientID, Now: p.now})
	p.mu.Unlock()
	p.log.Debug("provider: discovered", "issuer", d.Issuer, "token_url", ep.token)
	return ep, nil
}

// verifyIDToken verifies tok.IDToken (OpenID Connect Core §3.1.3.7:
// signature, iss, aud, exp) and, when the id_token carries at_hash, that it
// matches the access token (§3.1.3.8).
func (p *oauthProvider) verifyIDToken(ctx context.Context, tok *tokenbroker.Token) (*oidc.IDToken, error) {
	p.mu.Lock()
	v := p.verifier
	p.mu.Unlock()
	if v == nil {
		return nil, errors.New("no verifier: the issuer was not discovered")
	}
	idt, err := v.Verify(oidc.ClientContext(ctx, p.client), tok.IDToken)
	if err != nil {
		return nil, err
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return nil, err
		}
	}
	return idt, nil
}
