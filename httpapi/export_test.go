package httpapi

// Operations returns the "METHOD /path" of every /api/v1 route of s, for
// the OpenAPI conformance test.
func Operations(s *Server) []string { return s.operations }

// AppendTokenJSON is appendTokenJSON, for TestTokenJSONMatchesMarshal.
var AppendTokenJSON = appendTokenJSON

// TokenPath is tokenPath, for TestTokenPath.
var TokenPath = tokenPath
