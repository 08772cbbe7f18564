// Package identity lets workloads authenticate with the short-lived signed
// JWTs they already carry (a GitHub Actions OIDC token, a Kubernetes
// projected service-account token, a SPIFFE JWT-SVID) instead of an API
// key.
//
// The workload_identities section of the configuration file ([Config]) is
// a list of trust entries ([Trust]): an issuer and where its keys come
// from (OpenID Connect discovery, or a static jwks_file), the exact
// audience, an optional subject glob and exact claims, and what a
// matching workload may do: which users (a claim's value, or a list),
// which providers, which scopes.
//
// A [Verifier] checks a presented JWT against them (see [Verifier.Verify]
// for every check) and returns a [tokenbroker.Workload], whose scopes,
// users and providers the HTTP API applies exactly as an API key's. The
// signature algorithms are an explicit allow-list ([Algorithms]): never
// "none", never HMAC. Issuers' key sets are fetched lazily, cached,
// refreshed when old or when an unknown key id shows up (a rotation), and
// never fetched more than once per [Options.MinKeyRefetch], so callers
// cannot make this server hammer an issuer with made-up key ids.
//
// docs/identity.md has the reference and recipes for GitHub Actions,
// Kubernetes and SPIFFE.
package identity
