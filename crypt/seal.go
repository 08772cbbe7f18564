package crypt

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// Sealed values have the form
//
//	tb1:<key id>:<base64url(nonce || ciphertext || tag)>
//
// "tb1" is the format version, the key id is [KeyID] of the sealing key (16
// hex digits), the nonce is 12 random bytes and the tag 16 bytes
// (AES-256-GCM, NIST SP 800-38D). The payload uses the unpadded URL-safe
// alphabet of RFC 4648 §5, so a sealed value is plain ASCII that any text
// column holds.
const (
	formatPrefix = "tb1:"
	nonceSize    = 12
	tagSize      = 16
)

// adLabel starts every associated data and versions its layout.
const adLabel = "tokenbroker/v1"

// AD returns the associated data that binds a sealed value to its place:
// table, column and the row's identity (one or more parts, for example user
// id and provider id). A value sealed for one place fails to open at any
// other (GCM authenticates the associated data).
//
// The encoding is unambiguous: a count of parts, then each part prefixed by
// its length as a 32-bit big-endian integer. So ("a\x00b") and ("a", "b")
// differ, whatever bytes the parts hold.
func AD(table, column string, row ...string) []byte {
	parts := append([]string{adLabel, table, column}, row...)
	n := 4
	for _, p := range parts {
		n += 4 + len(p)
	}
	b := make([]byte, 0, n)
	b = binary.BigEndian.AppendUint32(b, uint32(len(parts)))
	for _, p := range parts {
		b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}

// Seal encrypts plaintext with the primary key under the associated data ad
// (see [AD]) and a fresh random 96-bit nonce, and returns the sealed text.
// An empty plaintext is sealed too (the result is never empty). It fails
// only if the ring's random source fails.
//
// Random nonces bound the safe number of seals per key to about 2^32 (NIST
// SP 800-38D §8.3); a token broker writes a few values per refresh, and a
// key rotation resets the count.
func (r *Ring) Seal(plaintext string, ad []byte) (string, error) {
	k := r.keys[0]
	buf := make([]byte, nonceSize, nonceSize+len(plaintext)+tagSize)
	if _, err := io.ReadFull(r.rand, buf); err != nil {
		return "", fmt.Errorf("crypt: draw nonce: %w", err)
	}
	buf = k.aead.Seal(buf, buf[:nonceSize], []byte(plaintext), ad)
	var sb strings.Builder
	sb.Grow(len(formatPrefix) + len(k.id) + 1 + base64.RawURLEncoding.EncodedLen(len(buf)))
	sb.WriteString(formatPrefix)
	sb.WriteString(k.id)
	sb.WriteByte(':')
	sb.WriteString(base64.RawURLEncoding.EncodeToString(buf))
	return sb.String(), nil
}

// Open decrypts a value sealed by any key of the ring under the same
// associated data. Errors match [ErrOpen]: [ErrMalformed] for text not in
// the sealed format, an [*UnknownKeyError] for a key the ring lacks,
// [ErrAuthentication] for a wrong key, a tampered value or a value moved
// from another row or column. Errors never include the value.
func (r *Ring) Open(sealed string, ad []byte) (string, error) {
	id, payload, err := split(sealed)
	if err != nil {
		return "", err
	}
	k, ok := r.byID[id]
	if !ok {
		return "", &UnknownKeyError{KeyID: id}
	}
	buf, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || len(buf) < nonceSize+tagSize {
		return "", ErrMalformed
	}
	pt, err := k.aead.Open(buf[nonceSize:nonceSize], buf[:nonceSize], buf[nonceSize:], ad)
	if err != nil {
		return "", ErrAuthentication
	}
	return string(pt), nil
}

// SealedKeyID returns the id of the key that sealed a value, without
// opening it. It returns [ErrMalformed] for text not in the sealed format.
func SealedKeyID(sealed string) (string, error) {
	id, _, err := split(sealed)
	return id, err
}

// IsSealed reports whether s has the form of a sealed value. It does not
// authenticate it.
func IsSealed(s string) bool {
	_, _, err := split(s)
	return err == nil
}

func split(sealed string) (id, payload string, err error) {
	rest, ok := strings.CutPrefix(sealed, formatPrefix)
	if !ok {
		return "", "", ErrMalformed
	}
	id, payload, ok = strings.Cut(rest, ":")
	if !ok || len(id) != 16 || !isLowerHex(id) {
		return "", "", ErrMalformed
	}
	return id, payload, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
