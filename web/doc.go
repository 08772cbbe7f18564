// Package web serves the pages a user's browser sees in the connect flow:
// the connect page of a connect session, the "Connect" button that starts
// the OAuth2 authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636),
// and the redirect URI that finishes it. The JSON API (package httpapi)
// creates connect sessions; [Handler] serves
//
//	GET  /connect/{session}                    the connect page
//	POST /connect/{session}/start/{provider}   the Connect button
//	GET  /oauth/callback                       the redirect URI
//
// # Binding a link to one browser
//
// A connect session's URL is single use. The first GET claims the session
// in the store (one conditional statement, so of two browsers racing for it
// exactly one wins) and sets a cookie whose value is an HMAC of the session
// id under [Config.CookieKey]. The URL alone therefore does not let a second
// browser pass as the first: it sees "This link was already used". The
// cookie is HttpOnly, SameSite=Lax (so it comes back with the provider's
// top-level redirect to the callback), scoped to the session's connect path
// and the callback, and Secure when [Config.CookieSecure] is on. The forms
// carry a CSRF token derived from the same binding.
//
// # The state
//
// Connect stores a [tokenbroker.AuthRequest]: 32 random bytes as the OAuth2
// state, a fresh PKCE verifier as its secret (sealed at rest by the crypt
// layer), the session, user, provider and redirect URI, and an expiry of
// [Config.StateTTL]. The callback looks the state up, checks that this
// browser holds the binding of the state's session (so a callback opened in
// another browser neither succeeds nor burns the state), then consumes it:
// the store deletes and returns it in one statement, so a state is redeemed
// at most once, and an expired one (judged on the database's clock) not at
// all. Only then does it exchange the code with the verifier, validate the
// token at the provider, write the link with [tokenbroker.Store.PutLink]
// and record link.create in the audit trail.
//
// # Where the browser goes next
//
// To the session's return URL when it passes the rule of internal/returnurl against
// [Config.ReturnURLAllowList] and every provider of the session is
// connected; otherwise back to the connect page, with a banner. There is no
// open redirect: the allow-list is matched on the exact origin and a path
// prefix, after refusing every URL shape that browsers and net/url may read
// differently.
//
// # Pages
//
// Pages are html/template files embedded in the binary, with one inline
// style sheet allowed by its hash in the content security policy and no
// script. Every response carries the security headers (CSP, X-Frame-Options,
// Referrer-Policy no-referrer so the session URL never leaks to a provider,
// Cache-Control no-store). Errors are friendly pages with a stable code;
// nothing shown or logged ever holds a token, code, state, verifier or
// session id. docs/connect-flow.md describes the flow for operators.
package web
