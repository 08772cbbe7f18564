package tokenbroker

import "regexp"

var (
	userIDRe     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,254}$`)
	providerIDRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
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
