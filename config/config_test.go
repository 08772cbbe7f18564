package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/identity"
	"github.com/tokenbroker/tokenbroker/provider"
	"github.com/tokenbroker/tokenbroker/webhook"
)

const sample = `
providers:
  - id: github
    kind: github
    client_id: Iv1.abc
workload_identities:
  - id: ci
    issuer: https://token.actions.githubusercontent.com
    audience: https://tokenbroker.example.com
    subject: "repo:acme/*"
    claims:
      repository_owner: acme
    user_claim: actor
    providers: [github]
    max_token_age: 30m
`

func TestParseBothSections(t *testing.T) {
	f, err := config.Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(f.Providers.Providers) != 1 || f.Providers.Providers[0].ID != "github" {
		t.Errorf("providers %+v", f.Providers.Providers)
	}
	wi := f.Identity.WorkloadIdentities
	if len(wi) != 1 || wi[0].ID != "ci" || wi[0].Claims["repository_owner"] != "acme" || wi[0].UserClaim != "actor" {
		t.Errorf("workload identities %+v", wi)
	}
}

// Unknown fields are refused at the top level and inside each section.
func TestUnknownFieldsRefused(t *testing.T) {
	for _, doc := range []string{
		"provider:\n  - id: x\n",
		"workload_identities:\n  - id: x\n    audiences: [a]\n",
		"providers:\n  - id: x\n    clientid: y\n",
		"webhooks:\n  - url: https://a.example/x\n    secrett: x\n",
	} {
		if _, err := config.Parse(strings.NewReader(doc)); err == nil {
			t.Errorf("Parse(%q) succeeded", doc)
		}
	}
}

// A trust entry may only name configured providers; both sections'
// errors are reported together.
func TestValidateAcrossSections(t *testing.T) {
	f, err := config.Parse(strings.NewReader(`
providers:
  - id: github
    kind: github
workload_identities:
  - id: ci
    issuer: https://issuer.example.com
    audience: tb
    users: [alice]
    providers: [gitlab]
`))
	if err != nil {
		t.Fatal(err)
	}
	err = f.Validate()
	var pe *provider.ValidationError
	var ie *identity.ValidationError
	if !errors.As(err, &pe) || !errors.As(err, &ie) {
		t.Fatalf("Validate = %v, want both sections' errors", err)
	}
	if !strings.Contains(ie.Error(), `"gitlab": no such provider is configured`) {
		t.Errorf("identity error %q", ie)
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tb.yaml")
	if err := os.WriteFile(path, []byte(sample), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(path, []string{"TOKENBROKER_PROVIDER_GITHUB_DISPLAY_NAME=GH"})
	if err != nil {
		t.Fatal(err)
	}
	if f.Providers.Providers[0].DisplayName != "GH" || len(f.Identity.WorkloadIdentities) != 1 {
		t.Errorf("loaded %+v", f)
	}
	if _, err := config.Load("", nil); err != nil {
		t.Errorf("Load of no file: %v", err)
	}
	if _, err := config.Load(filepath.Join(t.TempDir(), "missing.yaml"), nil); err == nil {
		t.Error("Load of a missing file succeeded")
	}
	if _, err := config.Load("", []string{"TOKENBROKER_PROVIDER_GH_KIND=github"}); err == nil || !strings.Contains(err.Error(), "client_id: required") {
		t.Errorf("Load validates: %v", err)
	}
	if f, err := config.Load("", []string{"TOKENBROKER_PROVIDER_GH_KIND=github", "TOKENBROKER_PROVIDER_GH_CLIENT_ID=x"}); err != nil || f.Providers.Providers[0].ID != "gh" {
		t.Errorf("Load from the environment alone: %v", err)
	}
}

func TestWebhooksSection(t *testing.T) {
	f, err := config.Parse(strings.NewReader(sample + `
webhooks:
  - url: https://platform.example.com/hooks
    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
    events: [link.reauth_required]
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	w := f.Webhooks.Webhooks
	if len(w) != 1 || w[0].URL != "https://platform.example.com/hooks" || w[0].Events[0] != "link.reauth_required" {
		t.Fatalf("webhooks %+v", w)
	}
	f.Webhooks.Webhooks[0].Secret = "hunter2"
	var we *webhook.ValidationError
	if err := f.Validate(); !errors.As(err, &we) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Validate = %v; want a webhook error without the secret", err)
	}
}
