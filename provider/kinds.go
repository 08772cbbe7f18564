package provider

import (
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Provider kinds.
const (
	KindOAuth2      = "oauth2"
	KindGitHub      = "github"
	KindGitLab      = "gitlab"
	KindBitbucket   = "bitbucket-cloud"
	KindGitea       = "gitea"
	KindForgejo     = "forgejo"
	KindMicrosoft   = "microsoft"
	KindAzureDevOps = "azure-devops"
	KindGoogle      = "google"
	KindSlack       = "slack"
	KindOIDC        = "oidc"
)

// Client authentication styles of the auth_style field (RFC 6749 §2.3.1).
const (
	authStyleHeader = "header" // HTTP Basic: client_secret_basic
	authStyleParams = "params" // form parameters: client_secret_post
)

// DefaultRefreshAhead is the refresh-ahead window of kinds that do not set
// their own.
const DefaultRefreshAhead = 5 * time.Minute

// revokeStyle says how a kind revokes a grant.
type revokeStyle int

const (
	revokeNone    revokeStyle = iota
	revokeRFC7009             // POST token=... (RFC 7009 §2.1)
	revokeGitHub              // DELETE /applications/{client_id}/grant
	revokeSlack               // POST auth.revoke with the token as bearer
)

// kindSpec is what distinguishes one kind from another: defaults, the
// client authentication style and the quirks of its endpoints.
type kindSpec struct {
	displayName string
	// authStyle is the client authentication style at the token endpoint.
	// It is never oauth2.AuthStyleAutoDetect: auto-detection retries a
	// failed request with the other style, which would send a refresh
	// token twice (docs/design.md I2).
	authStyle    oauth2.AuthStyle
	refreshAhead time.Duration
	// inactivityLimit is how long the provider, by its documentation,
	// lets a grant live unrefreshed (docs/providers.md, "Keep-alive"); 0:
	// no documented limit.
	inactivityLimit time.Duration
	scopes          []string // default scopes
	// requiredScopes are added to the configured scopes (Microsoft's
	// offline_access, without which no refresh token is issued).
	requiredScopes []string
	// authParams are added to the authorization URL.
	authParams map[string]string
	// scopeParam and scopeSep say how scopes are sent in the authorization
	// URL (Slack: user_scope, comma-separated).
	scopeParam, scopeSep string
	// refreshScope sends the scopes with a refresh (Entra ID requires it).
	refreshScope bool
	// slackEnvelope: answers are {"ok":false,"error":...} with HTTP 200 and
	// a user token may be nested in authed_user.
	slackEnvelope bool
	// deviceNoSecret sends only client_id to the device endpoint.
	deviceNoSecret bool
	// account maps the validate answer to an account.
	idFields, loginFields, emailFields []string
	revoke                             revokeStyle
	// baseURL and tenant say whether the fields apply; required lists the
	// fields the resolved configuration must have.
	baseURL, tenant bool
	required        []string
	// resolve fills in the kind's default URLs.
	resolve func(pc *ProviderConfig)
}

var kinds = map[string]*kindSpec{
	KindOAuth2: {
		authStyle:   oauth2.AuthStyleInHeader, // RFC 6749 §2.3.1: servers MUST support Basic
		idFields:    []string{"id", "sub", "user_id"},
		loginFields: []string{"login", "preferred_username", "username"},
		emailFields: []string{"email"},
		revoke:      revokeRFC7009,
		required:    []string{"auth_url", "token_url"},
		resolve:     func(*ProviderConfig) {},
	},
	KindGitHub: {
		displayName:  "GitHub",
		authStyle:    oauth2.AuthStyleInParams,
		refreshAhead: 15 * time.Minute, // 8-hour tokens
		// A GitHub App's user refresh token expires 6 months after it was
		// issued (refresh_token_expires_in 15897600 s); each refresh issues
		// a new one.
		inactivityLimit: 184 * 24 * time.Hour,
		deviceNoSecret:  true,
		idFields:        []string{"id"},
		loginFields:     []string{"login"},
		emailFields:     []string{"email"},
		revoke:          revokeGitHub,
		baseURL:         true,
		resolve: func(pc *ProviderConfig) {
			base := strings.TrimSuffix(orDefault(pc.BaseURL, "https://github.com"), "/")
			api := "https://api.github.com"
			if !isHost(base, "github.com") {
				api = base + "/api/v3" // GitHub Enterprise Server
			}
			setDefault(&pc.AuthURL, base+"/login/oauth/authorize")
			setDefault(&pc.TokenURL, base+"/login/oauth/access_token")
			setDefault(&pc.DeviceURL, base+"/login/device/code")
			setDefault(&pc.ValidateURL, api+"/user")
			setDefault(&pc.RevokeURL, api+"/applications/"+url.PathEscape(pc.ClientID)+"/grant")
			setDefault(&pc.Hosts, hostPattern(base))
		},
	},
	KindGitLab: {
		displayName:  "GitLab",
		authStyle:    oauth2.AuthStyleInParams,
		refreshAhead: DefaultRefreshAhead,
		scopes:       []string{"read_user"},
		idFields:     []string{"id"},
		loginFields:  []string{"username"},
		emailFields:  []string{"email"},
		revoke:       revokeRFC7009,
		baseURL:      true,
		resolve: func(pc *ProviderConfig) {
			base := strings.TrimSuffix(orDefault(pc.BaseURL, "https://gitlab.com"), "/")
			setDefault(&pc.AuthURL, base+"/oauth/authorize")
			setDefault(&pc.TokenURL, base+"/oauth/token")
			setDefault(&pc.DeviceURL, base+"/oauth/authorize_device")
			setDefault(&pc.ValidateURL, base+"/api/v4/user")
			setDefault(&pc.RevokeURL, base+"/oauth/revoke")
			setDefault(&pc.Hosts, hostPattern(base))
		},
	},
	KindBitbucket: {
		displayName: "Bitbucket",
		authStyle:   oauth2.AuthStyleInHeader,
		idFields:    []string{"uuid", "account_id"},
		loginFields: []string{"nickname", "username"},
		revoke:      revokeRFC7009, // only when revoke_url is set
		resolve: func(pc *ProviderConfig) {
			setDefault(&pc.AuthURL, "https://bitbucket.org/site/oauth2/authorize")
			setDefault(&pc.TokenURL, "https://bitbucket.org/site/oauth2/access_token")
			setDefault(&pc.ValidateURL, "https://api.bitbucket.org/2.0/user")
			setDefault(&pc.Hosts, `bitbucket\.org`)
		},
	},
	KindGitea:   giteaSpec("Gitea"),
	KindForgejo: giteaSpec("Forgejo"),
	KindMicrosoft: microsoftSpec("Microsoft", []string{"openid", "profile", "email", "offline_access", "User.Read"},
		"https://graph.microsoft.com/v1.0/me", "", []string{"userPrincipalName"}, []string{"mail", "userPrincipalName"}),
	// Azure DevOps is reached through Entra ID; its resource id is
	// 499b84ac-1321-427f-aa17-267ca6975798.
	KindAzureDevOps: microsoftSpec("Azure DevOps", []string{"499b84ac-1321-427f-aa17-267ca6975798/.default", "offline_access"},
		"https://app.vssps.visualstudio.com/_apis/profile/profiles/me?api-version=7.1",
		`dev\.azure\.com|[a-z0-9-]+\.visualstudio\.com`, []string{"emailAddress", "publicAlias"}, []string{"emailAddress"}),
	KindGoogle: {
		displayName: "Google",
		authStyle:   oauth2.AuthStyleInParams,
		scopes:      []string{"openid", "email", "profile"},
		// A refresh token that has not been used for six months expires.
		inactivityLimit: 180 * 24 * time.Hour,
		// A refresh token is issued only with access_type=offline, and
		// again for a returning user only with prompt=consent.
		authParams:  map[string]string{"access_type": "offline", "prompt": "consent"},
		idFields:    []string{"sub"},
		loginFields: []string{"email"},
		emailFields: []string{"email"},
		revoke:      revokeRFC7009,
		resolve: func(pc *ProviderConfig) {
			setDefault(&pc.AuthURL, "https://accounts.google.com/o/oauth2/v2/auth")
			setDefault(&pc.TokenURL, "https://oauth2.googleapis.com/token")
			setDefault(&pc.DeviceURL, "https://oauth2.googleapis.com/device/code")
			setDefault(&pc.ValidateURL, "https://openidconnect.googleapis.com/v1/userinfo")
			setDefault(&pc.RevokeURL, "https://oauth2.googleapis.com/revoke")
		},
	},
	KindSlack: {
		displayName:   "Slack",
		authStyle:     oauth2.AuthStyleInParams,
		refreshAhead:  15 * time.Minute, // 12-hour tokens
		scopeParam:    "user_scope",
		scopeSep:      ",",
		slackEnvelope: true,
		idFields:      []string{"user_id"},
		loginFields:   []string{"user"},
		revoke:        revokeSlack,
		resolve: func(pc *ProviderConfig) {
			setDefault(&pc.AuthURL, "https://slack.com/oauth/v2/authorize")
			setDefault(&pc.TokenURL, "https://slack.com/api/oauth.v2.access")
			setDefault(&pc.ValidateURL, "https://slack.com/api/auth.test")
			setDefault(&pc.RevokeURL, "https://slack.com/api/auth.revoke")
			setDefault(&pc.Hosts, `([a-z0-9-]+\.)?slack\.com`)
		},
	},
	KindOIDC: {
		// The auth style comes from the discovery document's
		// token_endpoint_auth_methods_supported unless auth_style is set.
		authStyle:   oauth2.AuthStyleInHeader,
		scopes:      []string{"openid", "profile", "email"},
		idFields:    []string{"sub"},
		loginFields: []string{"preferred_username", "email"},
		emailFields: []string{"email"},
		revoke:      revokeRFC7009,
		required:    []string{"issuer"},
		resolve:     func(*ProviderConfig) {},
	},
}

func giteaSpec(name string) *kindSpec {
	return &kindSpec{
		displayName: name,
		// The server's [oauth2] REFRESH_TOKEN_EXPIRATION_TIME, 730 hours
		// by default.
		inactivityLimit: 730 * time.Hour,
		authStyle:       oauth2.AuthStyleInParams,
		idFields:        []string{"id"},
		loginFields:     []string{"login", "username"},
		emailFields:     []string{"email"},
		revoke:          revokeRFC7009, // only when revoke_url is set
		baseURL:         true,
		required:        []string{"base_url"},
		resolve: func(pc *ProviderConfig) {
			if pc.BaseURL == "" {
				return
			}
			base := strings.TrimSuffix(pc.BaseURL, "/")
			setDefault(&pc.AuthURL, base+"/login/oauth/authorize")
			setDefault(&pc.TokenURL, base+"/login/oauth/access_token")
			setDefault(&pc.ValidateURL, base+"/api/v1/user")
			setDefault(&pc.Hosts, hostPattern(base))
		},
	}
}

func microsoftSpec(name string, scopes []string, validate, hosts string, login, email []string) *kindSpec {
	return &kindSpec{
		displayName:    name,
		authStyle:      oauth2.AuthStyleInParams,
		scopes:         scopes,
		requiredScopes: []string{"offline_access"},
		refreshScope:   true,
		// Entra ID refresh tokens expire after 90 days of inactivity
		// (AADSTS700082).
		inactivityLimit: 90 * 24 * time.Hour,
		idFields:        []string{"id"},
		loginFields:     login,
		emailFields:     email,
		revoke:          revokeRFC7009, // only when revoke_url is set
		baseURL:         true,
		tenant:          true,
		resolve: func(pc *ProviderConfig) {
			authority := strings.TrimSuffix(orDefault(pc.BaseURL, "https://login.microsoftonline.com"), "/") +
				"/" + orDefault(pc.Tenant, "common") + "/oauth2/v2.0"
			setDefault(&pc.AuthURL, authority+"/authorize")
			setDefault(&pc.TokenURL, authority+"/token")
			setDefault(&pc.DeviceURL, authority+"/devicecode")
			setDefault(&pc.ValidateURL, validate)
			setDefault(&pc.Hosts, hosts)
		},
	}
}

// Kinds returns the known kinds, sorted.
func Kinds() []string {
	names := make([]string, 0, len(kinds))
	for k := range kinds {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Resolve returns a copy of pc with the kind's defaults filled in: display
// name, scopes, endpoint URLs, hosts, auth style, refresh-ahead window. For kind oidc the endpoints stay
// empty until discovery. An unknown kind is returned unchanged.
func (pc ProviderConfig) Resolve() ProviderConfig {
	spec, ok := kinds[pc.Kind]
	if !ok {
		return pc
	}
	r := pc
	r.Scopes = append([]string(nil), pc.Scopes...)
	if pc.Scopes == nil {
		r.Scopes = append(r.Scopes, spec.scopes...)
	}
	for _, s := range spec.requiredScopes {
		if !slices.Contains(r.Scopes, s) {
			r.Scopes = append(r.Scopes, s)
		}
	}
	setDefault(&r.DisplayName, spec.displayName)
	setDefault(&r.DisplayName, pc.ID)
	if spec.tenant {
		setDefault(&r.Tenant, "common")
	}
	spec.resolve(&r)
	if r.RefreshAhead == nil {
		d := Duration(spec.refreshAhead)
		if d == 0 {
			d = Duration(DefaultRefreshAhead)
		}
		r.RefreshAhead = &d
	}
	if r.InactivityLimit == nil {
		d := Duration(spec.inactivityLimit)
		r.InactivityLimit = &d
	}
	if r.KeepAlive == nil {
		d := Duration(time.Duration(*r.InactivityLimit) / 10 * 9)
		r.KeepAlive = &d
	}
	if r.AuthStyle == "" && r.Kind != KindOIDC { // oidc: from discovery
		r.AuthStyle = authStyleHeader
		if spec.authStyle == oauth2.AuthStyleInParams {
			r.AuthStyle = authStyleParams
		}
	}
	if r.PKCEMethods == nil {
		r.PKCEMethods = []string{"S256"}
	}
	return r
}

func setDefault(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// isHost reports whether rawURL's host is host.
func isHost(rawURL, host string) bool {
	u, err := url.Parse(rawURL)
	return err == nil && strings.EqualFold(u.Hostname(), host)
}

// hostPattern is the hosts regular expression that matches rawURL's host.
func hostPattern(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Hostname() == "" {
		return ""
	}
	return regexp.QuoteMeta(strings.ToLower(u.Hostname()))
}

// HostMatcher returns the function that decides, as the server does
// ([Registry.ForHost]), whether a provider with the hosts expression expr
// serves host (a host name, or host:port).
func HostMatcher(expr string) (func(host string) bool, error) {
	re, err := compileHosts(expr)
	if err != nil {
		return nil, err
	}
	return func(host string) bool { return matchHost(re, strings.ToLower(host)) }, nil
}

// matchHost matches host, and host without its port.
func matchHost(re *regexp.Regexp, host string) bool {
	if re.MatchString(host) {
		return true
	}
	if h, _, ok := strings.Cut(host, ":"); ok && !strings.HasPrefix(host, "[") {
		return re.MatchString(h)
	}
	return false
}

// compileHosts compiles a hosts expression to match whole host names,
// case-insensitively.
func compileHosts(expr string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?i:` + expr + `)$`)
}
