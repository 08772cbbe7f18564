// Package crypt seals tokenbroker's secrets at rest: an AES-256-GCM key
// ring, a decorator that seals the secret fields of any
// [tokenbroker.Store], a start-up check and an online rekey.
//
// # Sealing
//
// A value is sealed with AES-256-GCM (NIST SP 800-38D) from the standard
// library, under a fresh random 96-bit nonce and with associated data that
// names its place: table, column and row identity (see [AD]). A sealed
// value copied to another row or column, or edited in one byte, fails to
// open. The sealed text is versioned and names its key:
//
//	tb1:<key id>:<base64url(nonce || ciphertext || tag)>
//
// The key id is a fingerprint of the key ([KeyID]); it reveals nothing of
// it and is also stored in each row's key_id column, which is what
// `tokenbroker keys status` counts and what a rekey walks.
//
// # The ring and rotation
//
// A [Ring] is an ordered list of keys: the first (primary) seals, every key
// opens what it sealed. It comes from TOKENBROKER_ENCRYPTION_KEYS (comma
// separated standard base64, see [ParseKeys]) or a key file
// ([LoadKeyFile]); the embedded default keeps a generated key file in its
// data directory (a policy of cmd/tokenbroker, devkey.go).
//
// Rotation with replicas is three rolling restarts, so that no replica
// ever reads a value sealed by a key it lacks: add the new key last
// (every replica can now open it), then move it first (it seals), run
// [Rekey] (`tokenbroker keys rekey`: it re-seals every row not sealed by
// the primary, in batches, online), and when `keys status` shows no row on
// the old key, drop the old key. A single replica can do the first two
// steps at once.
//
// # The decorator
//
// [Store] embeds a tokenbroker.Store and overrides only the methods that
// read or write sealed fields: the SQL stores never see a token, and the
// refresh protocol never sees a ciphertext. The protocol's compare-and-swap
// compares generations, not (non-deterministic) ciphertexts, so sealing
// does not affect it. [Rekey] re-seals through the inner store's
// ResealLink, a compare-and-swap on the generation that does not bump it:
// a refresh that commits during a rekey always wins, and the rekey re-reads
// the row (docs/design.md I3, I4).
//
// # Start-up
//
// [CheckRing] refuses a ring that lacks a key the database needs, with one
// line naming the missing key ids, so a replica started with the wrong
// TOKENBROKER_ENCRYPTION_KEYS fails at once instead of failing every token
// request.
package crypt
