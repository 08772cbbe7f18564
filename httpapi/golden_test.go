package httpapi

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestProblemDocumentsGolden pins the problem document of each code, as
// clients see it, to testdata/problems/<case>.json. Run with -update after
// an intended change.
func TestProblemDocumentsGolden(t *testing.T) {
	s := New(Config{})
	for name, err := range map[string]error{
		"invalid_request":      tokenbroker.Errorf(tokenbroker.EINVALID, "invalid user id: want 1-255 characters of letters, digits and ._@:+-"),
		"too_large":            tokenbroker.Errorf(codePayloadTooLarge, "the request body is larger than %d bytes", MaxBodyBytes),
		"unauthorized":         errUnauthorized,
		"forbidden":            tokenbroker.Errorf(tokenbroker.EFORBIDDEN, "this API key lacks the tokens:read scope"),
		"not_found":            tokenbroker.Errorf(tokenbroker.ENOTFOUND, "link not found"),
		"conflict":             tokenbroker.Errorf(tokenbroker.ECONFLICT, "an API key with this prefix exists"),
		"reauth_required":      &tokenbroker.ReauthRequiredError{UserID: "alice", ProviderID: "github", Reason: "invalid_grant: revoked", ConnectURL: "https://broker.example.com/connect/abc"},
		"reauth_required_bare": &tokenbroker.ReauthRequiredError{UserID: "alice", ProviderID: "github", Reason: "invalid_grant: revoked"},
		"provider_unavailable": &tokenbroker.ProviderUnavailableError{ProviderID: "github", RetryAfter: 30 * time.Second},
		"internal":             errors.New("sql: connection refused to 10.0.0.5"),
	} {
		t.Run(name, func(t *testing.T) {
			got, jerr := json.MarshalIndent(s.problemFor(err), "", "  ")
			if jerr != nil {
				t.Fatal(jerr)
			}
			got = append(got, '\n')
			file := filepath.Join("testdata", "problems", name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, rerr := os.ReadFile(file)
			if rerr != nil {
				t.Fatalf("%v (run with -update to create it)", rerr)
			}
			if string(got) != string(want) {
				t.Errorf("%s differs:\ngot:\n%s\nwant:\n%s", file, got, want)
			}
		})
	}
}
