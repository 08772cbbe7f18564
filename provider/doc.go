// Package provider implements [tokenbroker.Provider] for every provider
// kind tokenbroker speaks to — a generic RFC 6749 server (oauth2), GitHub,
// GitLab, Bitbucket Cloud, Gitea and Forgejo, Microsoft Entra ID (and Azure
// DevOps through it), Google, Slack and any OpenID Connect issuer (oidc) —
// together with their configuration and the one classifier of their
// failures.
//
// # Configuration
//
// A YAML file lists the providers ([Config], [ParseConfig]);
// every field can be set or overridden by an environment variable
// TOKENBROKER_PROVIDER_<ID>_<FIELD> ([Config.ApplyEnv]), so a container can
// be configured without a file. [Config.Validate] reports every bad field
// as a [*FieldError] and never prints a secret. Each kind fills in its
// defaults ([ProviderConfig.Resolve]): endpoint URLs (from base_url for
// self-hosted GitHub Enterprise, GitLab, Gitea and Forgejo, from the tenant
// for Microsoft, from discovery for oidc), scopes, the refresh-ahead window
// and the hosts it serves. docs/providers.md has the reference and the
// per-kind table.
//
// # One request per refresh
//
// The refresh coordinator (package refresh) guarantees that a refresh token
// is sent at most once (docs/design.md I1, I2). This package keeps its side of
// that promise: [tokenbroker.Provider.Refresh] sends exactly one request.
// The client authentication style (RFC 6749 §2.3.1) is set per kind and
// never auto-detected — golang.org/x/oauth2's auto-detection retries a
// failed request with the other style, which would present the same
// refresh token twice and may trip the provider's reuse detection. Nothing
// here retries; whether and when to try again is the coordinator's call.
//
// The client side is golang.org/x/oauth2 (refresh through a TokenSource
// called once, code exchange with the PKCE verifier) except where it cannot
// say what a kind needs: the device token poll (x/oauth2 loops, PollDevice
// polls once), Entra ID refreshes (which need the scope parameter) and
// Slack (whose user token may be nested in authed_user). Those use a single
// request of this package that parses answers the same way, so that an
// error member in an HTTP 200 answer (GitHub's bad_refresh_token, Slack's
// {"ok":false,"error":"invalid_refresh_token"}) is an error everywhere.
//
// # Failures
//
// [Classify] maps every failure to a [*tokenbroker.ProviderError]:
// permanent when the provider rejected the grant or the client
// (invalid_grant, bad_refresh_token, any other 400 or 401 answer), transient
// when it could not answer (network, timeouts, 5xx, 429, rate-limited 403).
// The provider's code and description are kept as the failure reason shown
// to users, truncated and scrubbed of anything that could be a token. OIDC
// id_tokens are verified with github.com/coreos/go-oidc/v3.
//
// [Registry] holds the configured providers, implements
// [tokenbroker.Providers] and answers which provider serves a host
// ([Registry.ForHost]).
package provider
