package apiv1

// RFC 8693 token exchange at POST /oauth2/token (outside /api/v1, and not
// in the OpenAPI description: its request is a form, its errors RFC 6749
// §5.2 objects rather than problem documents). docs/identity.md describes it.

// Identifiers of RFC 8693 §3 that the token exchange accepts.
const (
	GrantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeJWT           = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeIDToken       = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
)

// ExchangeToken is the successful answer of POST /oauth2/token (RFC 8693
// §2.2.1). It never holds a refresh token.
type ExchangeToken struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in,omitzero"` // absent: does not expire
	Scope           string `json:"scope,omitzero"`      // space-separated
}

// OAuthError is an error answer of POST /oauth2/token (RFC 6749 §5.2):
// Error is invalid_request, invalid_grant, invalid_target, invalid_scope,
// unauthorized_client, unsupported_grant_type, temporarily_unavailable or
// server_error.
type OAuthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitzero"`
}
