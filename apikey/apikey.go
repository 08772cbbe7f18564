// Package apikey mints, parses and verifies tokenbroker's API keys: the
// key format, the hash the database keeps, and the checks a new key's
// fields pass. The HTTP API (httpapi) and `tokenbroker apikeys create` both
// create keys through [New]; httpapi's authentication uses [Parse] and
// [VerifySecret].
package apikey

import (
	cryptorand "crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/tokenbroker/tokenbroker"
)

// API key format: "tbk_" + prefix + "_" + secret, where prefix is
// [PrefixLen] characters of [a-z0-9] (the public, unique lookup id) and
// secret is 32 random bytes in unpadded base64url (43 characters).
const (
	// Scheme starts every key.
	Scheme             = "tbk_"
	PrefixLen          = 12
	apiKeySecretBytes  = 32
	apiKeySecretLen    = 43 // base64.RawURLEncoding.EncodedLen(32)
	apiKeyLen          = len(Scheme) + PrefixLen + 1 + apiKeySecretLen
	apiKeyPrefixLetter = "abcdefghijklmnopqrstuvwxyz0123456789"
)

// Generate draws a new API key from rand (crypto/rand.Reader when
// nil). It returns the plaintext key, to be shown once and never stored,
// its public prefix and the hash of its secret to store
// ([tokenbroker.APIKey.Prefix] and SecretHash).
func Generate(rand io.Reader) (plaintext, prefix string, hash []byte, err error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	p, err := randomString(rand, PrefixLen, apiKeyPrefixLetter)
	if err != nil {
		return "", "", nil, fmt.Errorf("generate api key: %w", err)
	}
	secret := make([]byte, apiKeySecretBytes)
	if _, err := io.ReadFull(rand, secret); err != nil {
		return "", "", nil, fmt.Errorf("generate api key: %w", err)
	}
	s := base64.RawURLEncoding.EncodeToString(secret)
	return Scheme + p + "_" + s, p, HashSecret(s), nil
}

// New validates the fields of a key to create and returns it, with its
// plaintext, drawing the secret from rand (crypto/rand.Reader when nil).
// The name is 1-100 characters of text without control or bidirectional
// formatting characters ([tokenbroker.CheckText]): it is shown to admins
// in terminals and pages.
func New(rand io.Reader, name string, scopes, users, providers []string) (k *tokenbroker.APIKey, plaintext string, err error) {
	if err := tokenbroker.CheckText("name", name); err != nil {
		return nil, "", err
	}
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 100 {
		return nil, "", tokenbroker.Errorf(tokenbroker.EINVALID, "name: want 1-100 characters")
	}
	if len(scopes) == 0 {
		return nil, "", tokenbroker.Errorf(tokenbroker.EINVALID, "scopes: want at least one of %s", strings.Join(tokenbroker.AllScopes, ", "))
	}
	var sc []string
	for _, s := range scopes {
		if !slices.Contains(tokenbroker.AllScopes, s) {
			return nil, "", tokenbroker.Errorf(tokenbroker.EINVALID, "unknown scope %q: want %s", tokenbroker.Truncate(s, 40), strings.Join(tokenbroker.AllScopes, ", "))
		}
		if !slices.Contains(sc, s) {
			sc = append(sc, s)
		}
	}
	if len(users) > 1000 || len(providers) > 100 {
		return nil, "", tokenbroker.Errorf(tokenbroker.EINVALID, "at most 1000 users and 100 providers")
	}
	for _, u := range users {
		if err := tokenbroker.ValidateUserID(u); err != nil {
			return nil, "", err
		}
	}
	for _, p := range providers {
		if err := tokenbroker.ValidateProviderID(p); err != nil {
			return nil, "", err
		}
	}
	plaintext, prefix, hash, err := Generate(rand)
	if err != nil {
		return nil, "", err
	}
	return &tokenbroker.APIKey{
		Prefix:     prefix,
		SecretHash: hash,
		Name:       name,
		Scopes:     sc,
		Users:      slices.Compact(slices.Sorted(slices.Values(users))),
		Providers:  slices.Compact(slices.Sorted(slices.Values(providers))),
	}, plaintext, nil
}

// Parse splits a presented key into its prefix and secret. It
// returns an [*tokenbroker.Error] with [tokenbroker.EUNAUTHORIZED] if the
// key is not well formed; the error never contains the key.
func Parse(s string) (prefix, secret string, err error) {
	if len(s) != apiKeyLen || !strings.HasPrefix(s, Scheme) || s[len(Scheme)+PrefixLen] != '_' {
		return "", "", tokenbroker.Errorf(tokenbroker.EUNAUTHORIZED, "malformed API key")
	}
	prefix = s[len(Scheme) : len(Scheme)+PrefixLen]
	secret = s[len(Scheme)+PrefixLen+1:]
	for i := 0; i < len(prefix); i++ {
		if strings.IndexByte(apiKeyPrefixLetter, prefix[i]) < 0 {
			return "", "", tokenbroker.Errorf(tokenbroker.EUNAUTHORIZED, "malformed API key")
		}
	}
	return prefix, secret, nil
}

// HashSecret returns SHA-256 of the secret part of a key. A fast hash
// is right here: the secret is 256 random bits, so there is nothing for a
// slow, salted password hash to protect against (no dictionary, no
// brute force), and the hot path verifies keys on every request.
func HashSecret(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// VerifySecret reports whether secret hashes to hash, comparing in
// constant time.
func VerifySecret(secret string, hash []byte) bool {
	sum := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(sum[:], hash) == 1
}

// randomString draws n characters of alphabet from r without modulo bias.
func randomString(r io.Reader, n int, alphabet string) (string, error) {
	// Rejection sampling: accept bytes below the largest multiple of
	// len(alphabet) that fits in a byte.
	limit := 256 - 256%len(alphabet)
	out := make([]byte, 0, n)
	buf := make([]byte, n*2)
	for len(out) < n {
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		for _, b := range buf {
			if int(b) < limit {
				out = append(out, alphabet[int(b)%len(alphabet)])
				if len(out) == n {
					break
				}
			}
		}
	}
	return string(out), nil
}
