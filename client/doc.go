// Package client is the Go client of the tokenbroker API (docs/api.md).
//
// [New] makes a [Client] for one server and API key; its methods are the
// API's endpoints, typed. Every error answer of the server becomes an
// [*Error] carrying the problem document's stable code, so callers branch
// on codes, not on message text:
//
//	tok, err := broker.Token(ctx, "user-42", "github", 0)
//	var e *client.Error
//	if errors.As(err, &e) && e.Code == client.CodeReauthRequired {
//		// send the user to e.ConnectURL
//	}
//
// [Client.TokenSource] adapts the broker to golang.org/x/oauth2, so any
// code that takes an [oauth2.TokenSource] or an *http.Client from
// oauth2.NewClient uses the user's link directly. The program never holds a
// refresh token: the broker refreshes, exactly once per token generation
// across its replicas, and the adapter only asks the broker again when its
// current access token is about to expire.
package client
