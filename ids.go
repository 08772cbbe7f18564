package tokenbroker

import (
	"regexp"
	"strconv"
	"unicode"
	"unicode/utf8"
)

var (
	userIDRe     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,254}$`)
	providerIDRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	apiKeyIDRe   = regexp.MustCompile(`^[1-9][0-9]{0,18}$`)
)

// ValidateUserID checks a user id: 1–255 characters of letters, digits and
// . _ @ : + -, starting with a letter or digit. User ids are the platform's
// own identifiers; tokenbroker does not interpret them.
func ValidateUserID(id string) error {
	if !userIDRe.MatchString(id) {
		return Errorf(EINVALID, "invalid user id: want 1-255 characters of letters, digits and ._@:+-")
	}
	return nil
}

// ValidateProviderID checks a provider id: 1–63 lower-case letters, digits,
// _ and -, starting with a letter or digit.
func ValidateProviderID(id string) error {
	if !providerIDRe.MatchString(id) {
		return Errorf(EINVALID, "invalid provider id: want 1-63 characters of a-z, 0-9, _ and -")
	}
	return nil
}

// CheckText refuses free text (a key name, a token type, a scope) that
// could corrupt or deceive the terminal, log or page that shows it:
// invalid UTF-8, control characters (C0 with NUL, escape and newline,
// DEL, C1) and the bidirectional formatting characters that reorder what a
// reader sees (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069).
// field names the input in the error, which never quotes the text.
func CheckText(field, s string) error {
	if !utf8.ValidString(s) {
		return Errorf(EINVALID, "%s: not valid UTF-8", field)
	}
	for _, r := range s {
		switch {
		case unicode.IsControl(r):
			return Errorf(EINVALID, "%s: control characters (U+%04X) are not allowed", field, r)
		case r == 0x061C, r == 0x200E, r == 0x200F, r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069:
			return Errorf(EINVALID, "%s: bidirectional formatting characters (U+%04X) are not allowed", field, r)
		}
	}
	return nil
}

// ParseAPIKeyID parses an API key id as lists show it: a positive decimal
// integer written without sign, leading zero or anything else, so that
// "+1" and "01" do not name key 1.
func ParseAPIKeyID(s string) (int64, error) {
	if !apiKeyIDRe.MatchString(s) {
		return 0, Errorf(EINVALID, "invalid API key id: want a positive integer such as 3, as the key list shows it")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, Errorf(EINVALID, "invalid API key id: want a positive integer such as 3, as the key list shows it")
	}
	return n, nil
}
