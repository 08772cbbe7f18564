package crypt

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrOpen is matched (with errors.Is) by every failure to open a sealed
// value: an unknown key, a malformed value, or an authentication failure.
var ErrOpen = errors.New("crypt: cannot open sealed value")

// ErrAuthentication says that a sealed value failed AES-GCM authentication:
// it was sealed by a different key of the same id (practically impossible),
// tampered with, or copied from another row or column (its associated data
// differs). It matches [ErrOpen].
var ErrAuthentication = fmt.Errorf("%w: authentication failed (wrong key, tampered value, or value moved from another row or column)", ErrOpen)

// ErrMalformed says that a stored value is not in the sealed format
// ("tb1:<key id>:<base64url>"). It matches [ErrOpen].
var ErrMalformed = fmt.Errorf("%w: not a sealed value", ErrOpen)

// UnknownKeyError says that a sealed value names a key the ring does not
// hold: the key was dropped from TOKENBROKER_ENCRYPTION_KEYS before a rekey
// finished, or the ring is not the one the database was written with. It
// matches [ErrOpen].
type UnknownKeyError struct {
	KeyID string // id of the key that sealed the value
}

// Error implements the error interface.
func (e *UnknownKeyError) Error() string {
	return fmt.Sprintf("crypt: value sealed by key %s, which is not in the key ring", e.KeyID)
}

// Is makes errors.Is(err, ErrOpen) true.
func (e *UnknownKeyError) Is(target error) bool { return target == ErrOpen }

// RingMismatchError is returned by [CheckRing] when the key ring cannot
// open what the database holds. Missing lists the key ids that seal rows
// but are not in the ring.
type RingMismatchError struct {
	Missing []string
	Counts  map[string]int64 // rows sealed per key id, as the store counted them
	Cause   error            // the failure to open a sampled row, if that was the test that failed
}

// Error implements the error interface. The message is one line, safe to
// print, and names the environment variable to fix.
func (e *RingMismatchError) Error() string {
	if len(e.Missing) > 0 {
		ids := append([]string(nil), e.Missing...)
		sort.Strings(ids)
		return fmt.Sprintf("encryption key ring cannot open stored tokens: database has rows sealed by keys [%s] not in TOKENBROKER_ENCRYPTION_KEYS", strings.Join(ids, " "))
	}
	return fmt.Sprintf("encryption key ring cannot open stored tokens: %v; check TOKENBROKER_ENCRYPTION_KEYS", e.Cause)
}

// Unwrap returns the cause.
func (e *RingMismatchError) Unwrap() error { return e.Cause }
