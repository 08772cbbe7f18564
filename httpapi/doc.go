// Package httpapi is tokenbroker's REST API: JSON under /api/v1, API-key
// authentication, the device flow for headless users, connect sessions for
// the browser flow (whose pages live in package web), API-key management,
// the audit log, and /healthz and /readyz. docs/api.md is the reference.
//
// # Authentication
//
// Callers send `Authorization: Bearer tbk_<prefix>_<secret>` (RFC 6750
// §2.1). The prefix (12 characters of [a-z0-9]) is public and finds the
// key; only SHA-256 of the secret (32 random bytes) is stored, and the
// presented secret's hash is compared in constant time. A fast hash is
// right for a 256-bit random secret: there is no dictionary to slow down.
// Keys read from the store are cached by prefix for APIKeyCacheTTL (10s by
// default), so the hot path does no database read for a known key; a
// revocation through this server's API drops the cache entry at once, one
// made elsewhere (another replica, `tokenbroker apikeys revoke`) is
// effective within the TTL.
//
// Scopes are tokens:read, links:read, links:write and admin (which implies
// the others). A key restricted to users and/or providers gets 403
// forbidden for any other user or provider on every path that names one;
// lists are filtered to what it may see. Key management and the audit log
// need an admin key without restrictions.
//
// # Errors
//
// Every error is an RFC 9457 application/problem+json document with a
// stable code; [StatusOf] maps codes to statuses in one place.
// reauth_required (409) carries connect_url, a fresh connect session for
// the user and provider when the caller's key has links:write for them;
// provider_unavailable (503) carries Retry-After. Internal errors are
// logged and answered with a generic detail.
//
// # The hot path
//
// GET /api/v1/users/{user_id}/providers/{provider_id}/token authenticates
// from the cache, calls [tokenbroker.TokenService] once and records one
// audit event through [tokenbroker.Auditor], which must not block (package
// audit batches). It writes nothing to the store itself. The answer never
// holds the refresh token and is marked Cache-Control: no-store (RFC 6749
// §5.1).
//
// # Input and logging
//
// Bodies are limited to [MaxBodyBytes] (413), must be exactly one JSON
// object without unknown fields, and are fully decoded and validated before
// anything is changed; path parameters are validated with
// [tokenbroker.ValidateUserID] and [tokenbroker.ValidateProviderID]. Each
// request is logged once with method, route pattern, status, duration and
// key prefix, never the raw path or query, a header, a token or a key.
// Panics become a 500 problem and are logged by type, not value.
package httpapi
