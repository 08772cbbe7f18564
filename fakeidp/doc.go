// Package fakeidp is a real OAuth2 authorization server for tests, demos
// and benchmarks. Every claim tokenbroker makes about refresh races is
// shown against it, so it behaves like the strict real providers: single
// use, rotating refresh tokens with reuse detection that revokes the whole
// token family (RFC 9700 §4.14.2), GitHub's habit of reporting errors with
// HTTP 200, rate limits, and the faults that lose tokens in the real
// world.
//
// # Protocol
//
// One client is registered ([Config.ClientID]). The server implements the
// authorization code grant (RFC 6749 §4.1) with PKCE S256 (RFC 7636),
// exact redirect URI matching and a login page a browser can click
// through (or [Config.AutoApprove] for tests); the device authorization
// grant (RFC 8628) with its verification page and the
// authorization_pending, slow_down, expired_token and access_denied
// answers; the refresh token grant (RFC 6749 §6); token revocation (RFC
// 7009); a userinfo endpoint; and, with [Config.OIDC], OpenID Connect
// discovery, a JWKS and RS256-signed id_tokens. Client authentication is
// by HTTP Basic or form parameters, as [Config.ClientAuth] allows.
//
// # Token families
//
// Every grant (a redeemed code or device code, or [Server.IssueToken])
// starts a token family. Each refresh uses up the presented refresh token
// and issues a new access and refresh token in the same family, bumping
// its generation. Presenting a used refresh token again is a reuse: the
// family is revoked — its current refresh token and all its access tokens
// stop working — and the reuse is counted. [Config.ReuseGracePeriod]
// allows such a replay for a while after the rotation; it then returns the
// pair the rotation issued. All of this happens under one lock, so two
// concurrent refreshes with one token always end as one rotation and one
// reuse detection, which is what lets tests count provider calls per
// generation exactly.
//
// # Faults
//
// [Faults] inject latency (fixed and jittered) into every protocol
// endpoint, and hangs, 429 (with Retry-After), 500, 502 and 503 answers
// into the token endpoint (or more, see [FaultTarget]). The
// consume-then-fail faults carry a refresh out and then lose its answer —
// a 500 or a dropped connection — which is the window in which real
// clients lose tokens. Faults are set in [Config.Faults], with
// [Server.SetFaults], or with PUT /admin/faults on a running server.
// Decisions draw from [Config.Rand] and expiry reads [Config.Now], so a
// test can drive both exactly.
//
// # Use
//
// [Start] runs a server on a loopback port, like httptest.NewServer; [New]
// returns a bare [http.Handler]. [Server.Stats] (and GET /stats) counts
// every call. `tokenbroker fakeidp` runs one standalone; docs/fakeidp.md
// describes its endpoints and settings.
//
// Every endpoint is also served at the paths GitHub (Enterprise Server),
// GitLab and Gitea use, so a provider of those kinds pointed at the
// server's URL works unchanged.
//
// Tokens are random strings with recognizable prefixes ([PrefixAccessToken]
// and friends) so that a test can search logs and dumps for leaks. The
// server never logs a token, code or secret.
package fakeidp
