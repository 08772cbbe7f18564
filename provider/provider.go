package provider

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/tokenbroker/tokenbroker"
)

// Options are the dependencies of a provider.
type Options struct {
	// HTTPClient sends every request. Default: a client with a 30-second
	// timeout. Its transport gains an Accept: application/json header (for
	// GitHub) and a User-Agent.
	HTTPClient *http.Client
	// Now is the clock for token expiry. Default: time.Now.
	Now func() time.Time
	// Logger logs without secrets. Default: slog.Default().
	Logger *slog.Logger
	// LazyDiscovery defers OIDC discovery from [New] to the first call that
	// needs the endpoints, so a server can start while its issuer is down.
	LazyDiscovery bool
}

// endpoints are a provider's resolved URLs and client authentication style.
type endpoints struct {
	auth, token, device, validate, revoke string
	style                                 oauth2.AuthStyle
}

// oauthProvider implements [tokenbroker.Provider] for every kind; a
// kindSpec holds what differs. It is safe for concurrent use: everything
// but the OIDC discovery state is immutable after New.
type oauthProvider struct {
	pc     ProviderConfig // resolved
	spec   *kindSpec
	secret string
	client *http.Client
	now    func() time.Time
	log    *slog.Logger
	hosts  *regexp.Regexp // nil: serves no host
	pkce   bool

	// discoverMu serializes OIDC discovery; mu guards its result.
	discoverMu sync.Mutex
	mu         sync.Mutex
	ep         endpoints
	ready      bool // ep is complete (always true for kinds other than oidc)
	verifier   *oidc.IDTokenVerifier
}

var _ tokenbroker.Provider = (*oauthProvider)(nil)

// New returns the provider configured by pc. pc is validated and resolved
// (kind defaults filled in) and its secret file read. For kind oidc the
// issuer's discovery document is fetched with ctx, unless
// opts.LazyDiscovery is set.
func New(ctx context.Context, pc ProviderConfig, opts Options) (tokenbroker.Provider, error) {
	return newProvider(ctx, pc, opts)
}

func newProvider(ctx context.Context, pc ProviderConfig, opts Options) (*oauthProvider, error) {
	if errs := pc.validate(0); len(errs) > 0 {
		return nil, invalid(errs)
	}
	secret, err := pc.LoadSecret()
	if err != nil {
		return nil, err
	}
	r := pc.Resolve()
	p := &oauthProvider{
		pc:     r,
		spec:   kinds[r.Kind],
		secret: secret,
		client: wrapClient(opts.HTTPClient),
		now:    opts.Now,
		log:    opts.Logger,
		pkce:   len(r.PKCEMethods) > 0 && r.PKCEMethods[0] == "S256",
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	p.log = p.log.With("provider", r.ID)
	if r.Hosts != "" {
		p.hosts, _ = compileHosts(r.Hosts) // validated above
	}
	p.ep = endpoints{
		auth: r.AuthURL, token: r.TokenURL, device: r.DeviceURL,
		validate: r.ValidateURL, revoke: r.RevokeURL,
		style: p.authStyle(nil),
	}
	p.ready = r.Kind != KindOIDC
	if !p.ready && !opts.LazyDiscovery {
		if _, err := p.endpoints(ctx); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// authStyle is the client authentication style: auth_style if set, else
// for oidc the first of client_secret_basic and client_secret_post that the
// issuer supports (methods from discovery, nil before), else the kind's.
// A public client (no secret) always sends client_id as a parameter.
func (p *oauthProvider) authStyle(methods []string) oauth2.AuthStyle {
	switch {
	case p.secret == "":
		return oauth2.AuthStyleInParams
	case p.pc.AuthStyle == authStyleHeader:
		return oauth2.AuthStyleInHeader
	case p.pc.AuthStyle == authStyleParams:
		return oauth2.AuthStyleInParams
	case len(methods) > 0 && !slices.Contains(methods, "client_secret_basic") && slices.Contains(methods, "client_secret_post"):
		return oauth2.AuthStyleInParams
	}
	return p.spec.authStyle
}

// ID implements [tokenbroker.Provider].
func (p *oauthProvider) ID() string { return p.pc.ID }

// Kind implements [tokenbroker.Provider].
func (p *oauthProvider) Kind() string { return p.pc.Kind }

// RefreshAhead implements [tokenbroker.Provider].
func (p *oauthProvider) RefreshAhead() time.Duration { return time.Duration(*p.pc.RefreshAhead) }

// Info implements [tokenbroker.Provider].
func (p *oauthProvider) Info() tokenbroker.ProviderInfo {
	p.mu.Lock()
	ep, ready := p.ep, p.ready
	p.mu.Unlock()
	return tokenbroker.ProviderInfo{
		ID:           p.pc.ID,
		Kind:         p.pc.Kind,
		DisplayName:  p.pc.DisplayName,
		Scopes:       append([]string(nil), p.pc.Scopes...),
		RefreshAhead: p.RefreshAhead(),
		KeepAlive: tokenbroker.KeepAlive{
			InactivityLimit: time.Duration(*p.pc.InactivityLimit),
			RefreshAfter:    time.Duration(*p.pc.KeepAlive),
		},
		SupportsDevice: ep.device != "" || !ready && p.pc.DeviceURL != "",
		SupportsRevoke: p.spec.revoke != revokeNone && (ep.revoke != "" || !ready),
		Hosts:          p.pc.Hosts,
	}
}

// serves reports whether the provider serves host (a host name, or
// host:port).
func (p *oauthProvider) serves(host string) bool {
	return p.hosts != nil && matchHost(p.hosts, host)
}

// httpContext makes x/oauth2 and go-oidc use the provider's client.
func (p *oauthProvider) httpContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, p.client)
}

// oauth2Config is the x/oauth2 configuration for ep. The auth style is
// always explicit: never oauth2.AuthStyleAutoDetect, which retries a
// failed token request with the other style and so could send a refresh
// token twice (docs/design.md I2).
func (p *oauthProvider) oauth2Config(ep endpoints, redirectURL string) *oauth2.Config {
	if ep.style == oauth2.AuthStyleAutoDetect {
		panic("provider: auth style must be explicit")
	}
	return &oauth2.Config{
		ClientID:     p.pc.ClientID,
		ClientSecret: p.secret,
		Endpoint:     oauth2.Endpoint{AuthURL: ep.auth, TokenURL: ep.token, DeviceAuthURL: ep.device, AuthStyle: ep.style},
		RedirectURL:  redirectURL,
		Scopes:       p.pc.Scopes,
	}
}

// fail classifies err, scrubbing the secrets the request carried. A
// failure without an answer counts as possibly processed.
func (p *oauthProvider) fail(err error, secrets ...string) *tokenbroker.ProviderError {
	secrets = append(secrets, p.secret)
	return classify(p.pc.ID, err, p.now(), secrets, true)
}

// sentTracker records whether a request was written to a connection
// (httptrace.ClientTrace.WroteRequest), so that a failure without an answer
// can be told apart: never written is not processed, written is uncertain.
// The net/http transport retries on a new connection a request that wrote
// nothing; any write it reports counts, which errs on the side of
// "uncertain".
type sentTracker struct{ wrote atomic.Bool }

func (t *sentTracker) context(ctx context.Context) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { t.wrote.Store(true) },
	})
}

// failSent classifies the failure of a token request tracked by t.
func (p *oauthProvider) failSent(t *sentTracker, err error, secrets ...string) *tokenbroker.ProviderError {
	secrets = append(secrets, p.secret)
	return classify(p.pc.ID, err, p.now(), secrets, t.wrote.Load())
}

// AuthCodeURL implements [tokenbroker.Provider]: the authorization URL
// with the S256 code challenge (RFC 7636 §4.3) unless pkce_methods is
// "none", and the kind's parameters (Google's access_type=offline and
// prompt=consent). For a lazily discovered oidc provider that has not yet
// been discovered, it discovers with a 10-second timeout and returns "" if
// that fails.
func (p *oauthProvider) AuthCodeURL(state, codeChallenge, redirectURL string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ep, err := p.endpoints(ctx)
	if err != nil {
		p.log.Warn("provider: no authorization URL", "err", err)
		return ""
	}
	cfg := p.oauth2Config(ep, redirectURL)
	var opts []oauth2.AuthCodeOption
	for k, v := range p.spec.authParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	if p.spec.scopeParam != "" {
		if len(cfg.Scopes) > 0 {
			opts = append(opts, oauth2.SetAuthURLParam(p.spec.scopeParam, strings.Join(cfg.Scopes, p.spec.scopeSep)))
		}
		cfg.Scopes = nil
	}
	if p.pkce && codeChallenge != "" {
		opts = append(opts,
			oauth2.SetAuthURLParam("code_challenge", codeChallenge),
			oauth2.SetAuthURLParam("code_challenge_method", "S256"))
	}
	return cfg.AuthCodeURL(state, opts...)
}

// Refresh implements [tokenbroker.Provider] (RFC 6749 §6). It sends exactly
// one request: x/oauth2 with an explicit auth style, or for kinds that need
// more parameters (Entra ID's scope) or parse answers differently (Slack)
// a single request of this package. Nothing is retried (docs/design.md I2).
func (p *oauthProvider) Refresh(ctx context.Context, refreshToken string) (*tokenbroker.Token, error) {
	if refreshToken == "" {
		return nil, tokenbroker.Errorf(tokenbroker.EINVALID, "provider %s: no refresh token to refresh with", p.pc.ID)
	}
	ep, err := p.endpoints(ctx)
	if err != nil {
		// Discovery failed: nothing was sent to the token endpoint.
		pe := p.fail(err, refreshToken)
		pe.Class = tokenbroker.FailureNotProcessed
		return nil, pe
	}
	var sent sentTracker
	hctx := p.httpContext(sent.context(ctx))
	var ot *oauth2.Token
	if p.spec.refreshScope || p.spec.slackEnvelope {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
		if p.spec.refreshScope && len(p.pc.Scopes) > 0 {
			form.Set("scope", strings.Join(p.pc.Scopes, " "))
		}
		ot, err = p.retrieve(hctx, ep, form)
	} else {
		// A token without an access token is invalid, so the source
		// refreshes at once; Token is called once and, the auth style being
		// explicit, x/oauth2 sends one request.
		ot, err = p.oauth2Config(ep, "").TokenSource(hctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
	}
	if err != nil {
		pe := p.failSent(&sent, err, refreshToken)
		p.log.Debug("provider: refresh failed", "class", pe.Class, "status", pe.StatusCode, "code", pe.Code)
		return nil, pe
	}
	tok := p.convert(ot)
	if tok.RefreshToken == "" {
		tok.RefreshToken = refreshToken
	}
	if len(tok.Scopes) == 0 && p.spec.refreshScope && len(p.pc.Scopes) > 0 {
		// RFC 6749 §5.1: an answer without scope grants what was asked.
		// A refresh that asked for none keeps the grant's scopes (nil
		// here: the caller keeps the link's).
		tok.Scopes = slices.Clone(p.pc.Scopes)
	}
	if tok.IDToken != "" && p.pc.Kind == KindOIDC {
		// The provider has answered: its rotated refresh token must reach
		// the caller (I2), so an id_token that fails verification is
		// dropped with a warning rather than failing the refresh. The
		// identity was established by the Exchange that created the link.
		if _, err := p.verifyIDToken(ctx, tok); err != nil {
			p.log.Warn("provider: dropped an id_token that failed verification after a refresh", "err", scrub(err.Error(), []string{tok.IDToken, tok.AccessToken}, 200))
			tok.IDToken = ""
		}
	}
	return tok, nil
}

// Exchange implements [tokenbroker.Provider] (RFC 6749 §4.1.3 with the PKCE
// code_verifier of RFC 7636 §4.5). For kind oidc with the openid scope the
// id_token is required and verified (signature, issuer, audience, expiry,
// at_hash).
func (p *oauthProvider) Exchange(ctx context.Context, code, codeVerifier, redirectURL string) (*tokenbroker.Token, error) {
	if code == "" {
		return nil, tokenbroker.Errorf(tokenbroker.EINVALID, "provider %s: no authorization code", p.pc.ID)
	}
	ep, err := p.endpoints(ctx)
	if err != nil {
		return nil, err
	}
	hctx := p.httpContext(ctx)
	var ot *oauth2.Token
	if p.spec.slackEnvelope {
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}}
		if redirectURL != "" {
			form.Set("redirect_uri", redirectURL)
		}
		if p.pkce && codeVerifier != "" {
			form.Set("code_verifier", codeVerifier)
		}
		ot, err = p.retrieve(hctx, ep, form)
	} else {
		var opts []oauth2.AuthCodeOption
		if p.pkce && codeVerifier != "" {
			opts = append(opts, oauth2.VerifierOption(codeVerifier))
		}
		ot, err = p.oauth2Config(ep, redirectURL).Exchange(hctx, code, opts...)
	}
	if err != nil {
		return nil, p.fail(err, code, codeVerifier)
	}
	tok := p.convert(ot)
	if len(tok.Scopes) == 0 {
		// RFC 6749 §5.1: an answer without scope grants what was asked.
		tok.Scopes = slices.Clone(p.pc.Scopes)
	}
	if err := p.checkIDToken(ctx, tok); err != nil {
		return nil, err
	}
	return tok, nil
}

// checkIDToken verifies the id_token of a new grant (code or device) for
// kind oidc; with the openid scope one is required.
func (p *oauthProvider) checkIDToken(ctx context.Context, tok *tokenbroker.Token) error {
	if p.pc.Kind != KindOIDC {
		return nil
	}
	if tok.IDToken == "" {
		if slices.Contains(p.pc.Scopes, "openid") {
			return &tokenbroker.ProviderError{ProviderID: p.pc.ID, StatusCode: http.StatusOK, Code: "invalid_id_token",
				Description: "the token response has no id_token although the openid scope was requested", Class: tokenbroker.FailureRejected}
		}
		return nil
	}
	if _, err := p.verifyIDToken(ctx, tok); err != nil {
		return &tokenbroker.ProviderError{ProviderID: p.pc.ID, StatusCode: http.StatusOK, Code: "invalid_id_token",
			Description: scrub(err.Error(), []string{tok.IDToken, tok.AccessToken, tok.RefreshToken}, maxDescription), Class: tokenbroker.FailureRejected}
	}
	return nil
}

// DeviceAuth implements [tokenbroker.Provider] (RFC 8628 §3.1): one request.
func (p *oauthProvider) DeviceAuth(ctx context.Context) (*tokenbroker.DeviceAuth, error) {
	ep, err := p.endpoints(ctx)
	if err != nil {
		return nil, err
	}
	if ep.device == "" {
		return nil, tokenbroker.Errorf(tokenbroker.ENOTIMPLEMENTED, "provider %s does not support the device flow", p.pc.ID)
	}
	form := url.Values{"client_id": {p.pc.ClientID}}
	if len(p.pc.Scopes) > 0 {
		form.Set("scope", strings.Join(p.pc.Scopes, " "))
	}
	style := ep.style
	if p.spec.deviceNoSecret {
		style = styleNone
	}
	start := p.now()
	var resp struct {
		DeviceCode              string  `json:"device_code"`
		UserCode                string  `json:"user_code"`
		VerificationURI         string  `json:"verification_uri"`
		VerificationURL         string  `json:"verification_url"` // Google
		VerificationURIComplete string  `json:"verification_uri_complete"`
		ExpiresIn               jsonInt `json:"expires_in"`
		Interval                jsonInt `json:"interval"`
	}
	if err := p.postJSON(ctx, ep.device, form, style, &resp); err != nil {
		return nil, p.fail(err)
	}
	if resp.DeviceCode == "" || resp.UserCode == "" {
		return nil, &tokenbroker.ProviderError{ProviderID: p.pc.ID, StatusCode: http.StatusOK, Code: "invalid_response",
			Description: "the device authorization response lacks device_code or user_code"}
	}
	da := &tokenbroker.DeviceAuth{
		DeviceCode:              resp.DeviceCode,
		UserCode:                resp.UserCode,
		VerificationURI:         orDefault(resp.VerificationURI, resp.VerificationURL),
		VerificationURIComplete: resp.VerificationURIComplete,
		// RFC 8628 §3.2: "If no value is provided, clients MUST use 5 as
		// the default."
		Interval: 5 * time.Second,
	}
	if resp.Interval > 0 {
		da.Interval = time.Duration(resp.Interval) * time.Second
	}
	if resp.ExpiresIn > 0 {
		da.Expiry = start.Add(time.Duration(resp.ExpiresIn) * time.Second)
	}
	return da, nil
}

// PollDevice implements [tokenbroker.Provider] (RFC 8628 §3.4): exactly one
// token request. Unlike oauth2.Config.DeviceAccessToken it never waits or
// loops; "authorization_pending" and "slow_down" come back as transient
// [*tokenbroker.ProviderError]s and the caller polls again.
func (p *oauthProvider) PollDevice(ctx context.Context, deviceCode string) (*tokenbroker.Token, error) {
	if deviceCode == "" {
		return nil, tokenbroker.Errorf(tokenbroker.EINVALID, "provider %s: no device code", p.pc.ID)
	}
	ep, err := p.endpoints(ctx)
	if err != nil {
		return nil, err
	}
	if ep.device == "" {
		return nil, tokenbroker.Errorf(tokenbroker.ENOTIMPLEMENTED, "provider %s does not support the device flow", p.pc.ID)
	}
	form := url.Values{
		"grant_type":  {"urn:ietf:params:oauth:grant-type:device_code"},
		"device_code": {deviceCode},
		"client_id":   {p.pc.ClientID},
	}
	ot, err := p.retrieve(p.httpContext(ctx), ep, form)
	if err != nil {
		return nil, p.fail(err, deviceCode)
	}
	tok := p.convert(ot)
	if err := p.checkIDToken(ctx, tok); err != nil {
		return nil, err
	}
	return tok, nil
}

// convert turns an x/oauth2 token into a domain token: the expiry from
// expires_in on the injected clock, the granted scopes (space- or, for
// GitHub, comma-separated), the id_token and the configured extra keys as
// strings.
func (p *oauthProvider) convert(ot *oauth2.Token) *tokenbroker.Token {
	now := p.now()
	tok := &tokenbroker.Token{
		AccessToken:  ot.AccessToken,
		TokenType:    ot.TokenType,
		RefreshToken: ot.RefreshToken,
		IssuedAt:     now,
	}
	switch n, ok := extraInt(ot, "expires_in"); {
	case ot.ExpiresIn > 0:
		tok.Expiry = now.Add(time.Duration(ot.ExpiresIn) * time.Second)
	case ok && n > 0:
		tok.Expiry = now.Add(time.Duration(n) * time.Second)
	case !ot.Expiry.IsZero():
		tok.Expiry = ot.Expiry
	}
	if s, ok := extraString(ot, "scope"); ok {
		tok.Scopes = strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' })
	}
	if s, ok := extraString(ot, "id_token"); ok {
		tok.IDToken = s
	}
	for _, k := range p.pc.ExtraTokenKeys {
		if s, ok := extraString(ot, k); ok {
			if tok.Extra == nil {
				tok.Extra = map[string]string{}
			}
			tok.Extra[k] = s
		}
	}
	return tok
}
