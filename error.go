package tokenbroker

import (
	"errors"
	"fmt"
	"time"
)

// Application error codes. They are stable: the HTTP layer sends them to
// clients as the "code" member of a problem document (RFC 9457) and maps
// each to a status in one place.
const (
	ECONFLICT            = "conflict"
	EINTERNAL            = "internal"
	EINVALID             = "invalid_request"
	ENOTFOUND            = "not_found"
	EUNAUTHORIZED        = "unauthorized"
	EFORBIDDEN           = "forbidden"
	EREAUTHREQUIRED      = "reauth_required"
	EPROVIDERUNAVAILABLE = "provider_unavailable"
	ENOTIMPLEMENTED      = "not_implemented"
	// EPROVIDERMISCONFIGURED: the provider refused this service's client
	// credentials; an operator must fix the provider's configuration.
	EPROVIDERMISCONFIGURED = "provider_misconfigured"
	// ESTOREUNAVAILABLE: the database could not be reached; try again.
	ESTOREUNAVAILABLE = "store_unavailable"
)

// Error is an application error: a stable code and a message that is safe
// to show to users. It never carries a secret.
type Error struct {
	Code    string
	Message string
}

// Error implements the error interface.
func (e *Error) Error() string {
	return fmt.Sprintf("tokenbroker error: code=%s message=%s", e.Code, e.Message)
}

// Errorf returns an [*Error] with the given code and a formatted message.
// The message must not contain secrets.
func Errorf(code string, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ReauthRequiredError says that a link can no longer be refreshed: the
// provider rejected its grant (or it was never usable) and the user must
// connect again. Reason is the provider's error code and description,
// truncated and free of tokens. ConnectURL, when set by the caller's layer,
// is where to send the user.
type ReauthRequiredError struct {
	UserID     string
	ProviderID string
	// Code is the typed reason (revoked, lost_refresh, ...); Reason
	// explains it.
	Code       ReauthReason
	Reason     string
	ConnectURL string
}

// Error implements the error interface.
func (e *ReauthRequiredError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("link %s/%s needs re-authentication", e.UserID, e.ProviderID)
	}
	return fmt.Sprintf("link %s/%s needs re-authentication: %s", e.UserID, e.ProviderID, e.Reason)
}

// ProviderUnavailableError says that the provider could not be reached or
// answered with a transient failure, and no valid token is at hand. The link
// stays active; RetryAfter hints when to ask again.
type ProviderUnavailableError struct {
	ProviderID string
	RetryAfter time.Duration
	Cause      error
}

// Error implements the error interface.
func (e *ProviderUnavailableError) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("provider %s unavailable: %v", e.ProviderID, e.Cause)
	}
	return fmt.Sprintf("provider %s unavailable", e.ProviderID)
}

// Unwrap returns the underlying cause.
func (e *ProviderUnavailableError) Unwrap() error { return e.Cause }

// ProviderMisconfiguredError says that the provider refused this service's
// client (a wrong or rotated client secret, a revoked client): no link can
// be refreshed until an operator fixes the configuration. Links keep their
// state and tokens; RetryAfter is when the next probe may clear it.
type ProviderMisconfiguredError struct {
	ProviderID string
	Reason     string
	RetryAfter time.Duration
}

// Error implements the error interface.
func (e *ProviderMisconfiguredError) Error() string {
	return fmt.Sprintf("provider %s is misconfigured: it refused this service's client credentials (%s)", e.ProviderID, e.Reason)
}

// Is makes errors.Is(err, ErrProviderUnavailable) true: no token can be
// refreshed at this provider for now.
func (e *ProviderMisconfiguredError) Is(target error) bool { return target == ErrProviderUnavailable }

// StoreUnavailableError says that the database could not be reached. It
// carries the driver's error for logs; users see only the code.
type StoreUnavailableError struct {
	Op  string
	Err error
}

// Error implements the error interface.
func (e *StoreUnavailableError) Error() string {
	return fmt.Sprintf("store unavailable (%s): %v", e.Op, e.Err)
}

// Unwrap returns the driver's error.
func (e *StoreUnavailableError) Unwrap() error { return e.Err }

// ErrReauthRequired matches any [*ReauthRequiredError] with errors.Is.
var ErrReauthRequired = errors.New("re-authentication required")

// ErrProviderUnavailable matches any [*ProviderUnavailableError] with errors.Is.
var ErrProviderUnavailable = errors.New("provider unavailable")

// Is makes errors.Is(err, ErrReauthRequired) true.
func (e *ReauthRequiredError) Is(target error) bool { return target == ErrReauthRequired }

// Is makes errors.Is(err, ErrProviderUnavailable) true.
func (e *ProviderUnavailableError) Is(target error) bool { return target == ErrProviderUnavailable }

// ErrorCode returns the code of the application error found in err's chain,
// "" for nil, and [EINTERNAL] for anything else.
func ErrorCode(err error) string {
	code, _ := codeAndMessage(err)
	return code
}

// ErrorMessage returns the user-safe message of the application error in
// err's chain, and "Internal error." for anything else.
func ErrorMessage(err error) string {
	_, msg := codeAndMessage(err)
	return msg
}

// codeAndMessage finds the application error in err's chain and returns
// its code and user-safe message: "", "" for nil; [EINTERNAL] and
// "Internal error." for anything else.
func codeAndMessage(err error) (code, msg string) {
	if err == nil {
		return "", ""
	}
	var e *Error
	var re *ReauthRequiredError
	var pe *ProviderUnavailableError
	var me *ProviderMisconfiguredError
	var se *StoreUnavailableError
	switch {
	case errors.As(err, &re):
		return EREAUTHREQUIRED, re.Error()
	case errors.As(err, &pe):
		return EPROVIDERUNAVAILABLE, fmt.Sprintf("provider %s is unavailable, try again later", pe.ProviderID)
	case errors.As(err, &me):
		return EPROVIDERMISCONFIGURED, fmt.Sprintf("provider %s refuses this service's client credentials (%s); an operator must fix its configuration", me.ProviderID, me.Reason)
	case errors.As(err, &e):
		return e.Code, e.Message
	case errors.As(err, &se):
		return ESTOREUNAVAILABLE, "The database is unavailable, try again later."
	}
	return EINTERNAL, "Internal error."
}

// IsNotFound reports whether err is an application error with code [ENOTFOUND].
func IsNotFound(err error) bool { return ErrorCode(err) == ENOTFOUND }

// IsConflict reports whether err is an application error with code [ECONFLICT].
func IsConflict(err error) bool { return ErrorCode(err) == ECONFLICT }
