package tokenbroker_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/tokenbroker/tokenbroker"
)

// TestErrorCodeAndMessage checks that ErrorCode and ErrorMessage find the
// same application error through wrapping, and tell nothing of anything
// else.
func TestErrorCodeAndMessage(t *testing.T) {
	for _, c := range []struct {
		name      string
		err       error
		code, msg string
	}{
		{"nil", nil, "", ""},
		{"plain", errors.New("driver: secret detail"), tokenbroker.EINTERNAL, "Internal error."},
		{"application", tokenbroker.Errorf(tokenbroker.ENOTFOUND, "no link"), tokenbroker.ENOTFOUND, "no link"},
		{"reauth", &tokenbroker.ReauthRequiredError{UserID: "alice", ProviderID: "gh", Reason: "revoked"},
			tokenbroker.EREAUTHREQUIRED, "link alice/gh needs re-authentication: revoked"},
		{"unavailable", &tokenbroker.ProviderUnavailableError{ProviderID: "gh", Cause: errors.New("dial: secret detail")},
			tokenbroker.EPROVIDERUNAVAILABLE, "provider gh is unavailable, try again later"},
		{"misconfigured", &tokenbroker.ProviderMisconfiguredError{ProviderID: "gh", Reason: "invalid_client"},
			tokenbroker.EPROVIDERMISCONFIGURED, "provider gh refuses this service's client credentials (invalid_client); an operator must fix its configuration"},
		{"store", &tokenbroker.StoreUnavailableError{Op: "get link", Err: errors.New("dial: secret detail")},
			tokenbroker.ESTOREUNAVAILABLE, "The database is unavailable, try again later."},
		// The first application error in the chain decides, whatever wraps it.
		{"wrapped", fmt.Errorf("refresh: %w", tokenbroker.Errorf(tokenbroker.ECONFLICT, "changed")), tokenbroker.ECONFLICT, "changed"},
		{"reauth before application", fmt.Errorf("%w: %w", tokenbroker.Errorf(tokenbroker.EINVALID, "x"), &tokenbroker.ReauthRequiredError{UserID: "u", ProviderID: "p"}),
			tokenbroker.EREAUTHREQUIRED, "link u/p needs re-authentication"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := tokenbroker.ErrorCode(c.err); got != c.code {
				t.Errorf("ErrorCode = %q, want %q", got, c.code)
			}
			if got := tokenbroker.ErrorMessage(c.err); got != c.msg {
				t.Errorf("ErrorMessage = %q, want %q", got, c.msg)
			}
		})
	}
}
