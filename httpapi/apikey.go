package httpapi

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"strings"

	"github.com/tokenbroker/tokenbroker"
)

// API key format: "tbk_" + prefix + "_" + secret, where prefix is
// [APIKeyPrefixLen] characters of [a-z0-9] (the public, unique lookup id)
// and secret is 32 random bytes in unpadded base64url (43 characters).
const (
	apiKeyScheme       = "tbk_"
	APIKeyPrefixLen    = 12
	apiKeySecretBytes  = 32
	apiKeySecretLen    = 43 // base64.RawURLEncoding.EncodedLen(32)
	apiKeyLen          = len(apiKeyScheme) + APIKeyPrefixLen + 1 + apiKeySecretLen
	apiKeyPrefixLetter = "abcdefghijklmnopqrstuvwxyz0123456789"
)

// GenerateAPIKey draws a new API key from rand (crypto/rand.Reader when
// nil). It returns the plaintext key, to be shown once and never stored,
// its public prefix and the hash of its secret to store
// ([tokenbroker.APIKey.Prefix] and SecretHash).
func GenerateAPIKey(rand io.Reader) (plaintext, prefix string, hash []byte, err error) {
	if rand == nil {
		rand = cryptoRand
	}
	p, err := randomString(rand, APIKeyPrefixLen, apiKeyPrefixLetter)
	if err != nil {
		return "", "", nil, fmt.Errorf("generate api key: %w", err)
	}
	secret := make([]byte, apiKeySecretBytes)
	if _, err := io.ReadFull(rand, secret); err != nil {
		return "", "", nil, fmt.Errorf("generate api key: %w", err)
	}
	s := base64.RawURLEncoding.EncodeToString(secret)
	return apiKeyScheme + p + "_" + s, p, HashAPIKeySecret(s), nil
}

// ParseAPIKey splits a presented key into its prefix and secret. It
// returns an [*tokenbroker.Error] with [tokenbroker.EUNAUTHORIZED] if the
// key is not well formed; the error never contains the key.
func ParseAPIKey(s string) (prefix, secret string, err error) {
	if len(s) != apiKeyLen || !strings.HasPrefix(s, apiKeyScheme) || s[len(apiKeyScheme)+APIKeyPrefixLen] != '_' {
		return "", "", tokenbroker.Errorf(tokenbroker.EUNAUTHORIZED, "malformed API key")
	}
	prefix = s[len(apiKeyScheme) : len(apiKeyScheme)+APIKeyPrefixLen]
	secret = s[len(apiKeyScheme)+APIKeyPrefixLen+1:]
	for i := 0; i < len(prefix); i++ {
		if strings.IndexByte(apiKeyPrefixLetter, prefix[i]) < 0 {
			return "", "", tokenbroker.Errorf(tokenbroker.EUNAUTHORIZED, "malformed API key")
		}
	}
	return prefix, secret, nil
}

// HashAPIKeySecret returns SHA-256 of the secret part of a key. A fast hash
// is right here: the secret is 256 random bits, so there is nothing for a
// slow, salted password hash to protect against (no dictionary, no
// brute force), and the hot path verifies keys on every request.
func HashAPIKeySecret(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// VerifyAPIKeySecret reports whether secret hashes to hash, comparing in
// constant time.
func VerifyAPIKeySecret(secret string, hash []byte) bool {
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

// randomID returns 32 random bytes from r in unpadded base64url: the ids of
// connect sessions and device requests, which are secrets in URLs.
func randomID(r io.Reader) (string, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("random id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

var cryptoRand io.Reader = rand.Reader
