package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/url"
	"sync"

	"github.com/tokenbroker/tokenbroker"
)

// parseBaseURL parses the BaseURL of a [Config] or [ConsoleConfig]: an
// absolute http(s) URL without user info, query or fragment.
func parseBaseURL(s string) (*url.URL, error) {
	base, err := url.Parse(s)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" ||
		base.User != nil || base.RawQuery != "" || base.Fragment != "" {
		return nil, tokenbroker.Errorf(tokenbroker.EINVALID, "web: BaseURL must be an absolute http(s) URL without user info, query or fragment")
	}
	return base, nil
}

// secrets is what the connect pages ([Handler]) and the console make
// unguessable values with: an HMAC key and a random source.
type secrets struct {
	key []byte

	// randMu serializes reads of rand, which need not be safe for
	// concurrent use. It guards no invariant of docs/design.md: neither
	// the connect flow (it writes a link with PutLink, outside the
	// refresh protocol's lease) nor console sessions take part in the
	// refresh protocol.
	randMu sync.Mutex
	rand   io.Reader
}

// newSecrets returns the secrets of a configuration's CookieKey and Rand:
// a copy of cookieKey (at least 32 bytes), or 32 bytes drawn from rnd when
// it is nil; rnd nil is crypto/rand.Reader.
func newSecrets(cookieKey []byte, rnd io.Reader) (*secrets, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	s := &secrets{rand: rnd}
	switch {
	case cookieKey == nil:
		s.key = make([]byte, 32)
		if err := s.readRand(s.key); err != nil {
			return nil, err
		}
	case len(cookieKey) < 32:
		return nil, tokenbroker.Errorf(tokenbroker.EINVALID, "web: CookieKey must be at least 32 bytes")
	default:
		s.key = append([]byte(nil), cookieKey...)
	}
	return s, nil
}

// readRand fills b from the configured random source.
func (s *secrets) readRand(b []byte) error {
	s.randMu.Lock()
	defer s.randMu.Unlock()
	if _, err := io.ReadFull(s.rand, b); err != nil {
		return fmt.Errorf("web: read random: %w", err)
	}
	return nil
}

// mac is HMAC-SHA256 under the key of label || value, in unpadded
// base64url.
func (s *secrets) mac(label, value string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(label))
	m.Write([]byte(value))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
