package apiv1_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apiv1"
)

// TestLinkEnumsMatchTheDomain: the states and typed reasons the API
// describes are exactly the domain's, for every schema that shows a link.
func TestLinkEnumsMatchTheDomain(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Enum []string `json:"enum"`
				} `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(apiv1.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	var states, reasons []string
	for _, s := range tokenbroker.LinkStates() {
		states = append(states, string(s))
	}
	for _, r := range tokenbroker.ReauthReasons() {
		reasons = append(reasons, string(r))
	}
	for _, name := range []string{"Link", "ImportResult"} {
		sch, ok := doc.Components.Schemas[name]
		if !ok {
			t.Fatalf("no schema %s", name)
		}
		if got := sch.Properties["state"].Enum; !slices.Equal(got, states) {
			t.Errorf("%s.state enum = %v, want %v", name, got, states)
		}
		if got := sch.Properties["reauth_reason"].Enum; !slices.Equal(got, reasons) {
			t.Errorf("%s.reauth_reason enum = %v, want %v", name, got, reasons)
		}
	}
}
