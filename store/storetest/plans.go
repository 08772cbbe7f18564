package storetest

import (
	"maps"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

// LinkListShape is a kind of page the console asks for and the index of
// migration 00004 that must serve it ("" for the index on (user_id,
// provider_id), which each engine names its own way).
type LinkListShape struct {
	Query tokenbroker.LinkQuery
	Index string
}

// LinkListShapes are the kinds of page the console asks for: every filter
// alone and in the combinations its form offers, first and later pages,
// forward and backward. A store's own tests check that each is a range of
// its index, in (user_id, provider_id) order, with no sort.
func LinkListShapes() map[string]LinkListShape {
	cur := &tokenbroker.LinkCursor{UserID: "u5", ProviderID: "github"}
	shapes := map[string]LinkListShape{
		"all":                {tokenbroker.LinkQuery{}, ""},
		"provider":           {tokenbroker.LinkQuery{ProviderID: "github"}, "links_provider_user"},
		"state":              {tokenbroker.LinkQuery{State: tokenbroker.LinkReauthRequired}, "links_state_user"},
		"provider and state": {tokenbroker.LinkQuery{ProviderID: "github", State: tokenbroker.LinkActive}, "links_provider_state_user"},
		"reason":             {tokenbroker.LinkQuery{ReasonCode: "invalid_grant"}, "links_reason_user"},
		"typed reason":       {tokenbroker.LinkQuery{ReauthReason: tokenbroker.ReasonRevoked}, "links_state_user"},
		"user prefix":        {tokenbroker.LinkQuery{UserPrefix: "u1"}, ""},
		"account":            {tokenbroker.LinkQuery{AccountLogin: "alice"}, "links_account_login"},
	}
	for name, s := range maps.Clone(shapes) {
		after, before := s, s
		after.Query.After, before.Query.Before = cur, cur
		shapes[name+", next page"] = after
		shapes[name+", previous page"] = before
	}
	return shapes
}
