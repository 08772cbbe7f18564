package webhook_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/webhook"
)

func TestConfigValidate(t *testing.T) {
	secret := webhook.NewSecret()
	ok := webhook.EndpointConfig{URL: "https://crm.example.com/hooks", Secret: secret}
	cases := []struct {
		name  string
		ec    webhook.EndpointConfig
		field string // "" : valid
		msg   string
	}{
		{"valid", ok, "", ""},
		{"loopback http", webhook.EndpointConfig{URL: "http://127.0.0.1:9/x", Secret: secret}, "", ""},
		{"insecure http allowed", webhook.EndpointConfig{URL: "http://crm.internal/x", Secret: secret, InsecureHTTP: true}, "", ""},
		{"rotation", webhook.EndpointConfig{URL: "https://a.example/x", Secret: secret + " " + webhook.NewSecret()}, "", ""},
		{"filtered", webhook.EndpointConfig{URL: "https://a.example/x", Secret: secret, Events: []string{"link.recovered"}}, "", ""},
		{"no url", webhook.EndpointConfig{Secret: secret}, "url", "required"},
		{"http", webhook.EndpointConfig{URL: "http://crm.example.com/x", Secret: secret}, "url", "https"},
		{"credentials", webhook.EndpointConfig{URL: "https://u:p@crm.example.com/x", Secret: secret}, "url", "credentials"},
		{"no secret", webhook.EndpointConfig{URL: "https://a.example/x"}, "secret", "required"},
		{"both secrets", webhook.EndpointConfig{URL: "https://a.example/x", Secret: secret, SecretFile: "/x"}, "secret", "not both"},
		{"bad secret", webhook.EndpointConfig{URL: "https://a.example/x", Secret: "hunter2hunter2"}, "secret", "whsec_"},
		{"bad event", webhook.EndpointConfig{URL: "https://a.example/x", Secret: secret, Events: []string{"link.exploded"}}, "events", "unknown event type"},
		{"bad id", webhook.EndpointConfig{ID: "a b", URL: "https://a.example/x", Secret: secret}, "id", "want"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := webhook.Config{Webhooks: []webhook.EndpointConfig{c.ec}}.Validate()
			if c.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			var ve *webhook.ValidationError
			if !errors.As(err, &ve) || len(ve.Errors) != 1 || ve.Errors[0].Field != c.field || !strings.Contains(ve.Errors[0].Msg, c.msg) {
				t.Fatalf("Validate = %v; want one error on %s containing %q", err, c.field, c.msg)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), secret[6:]) {
				t.Fatalf("the error shows a secret: %v", err)
			}
		})
	}
	dup := webhook.Config{Webhooks: []webhook.EndpointConfig{ok, ok}}
	if err := dup.Validate(); err == nil || !strings.Contains(err.Error(), "duplicate id") {
		t.Fatalf("two endpoints of one URL: %v", err)
	}
	if id := ok.EndpointID(); id != "crm.example.com/hooks" {
		t.Fatalf("EndpointID = %q", id)
	}
}

func TestEndpointsLoadSecretFiles(t *testing.T) {
	dir := t.TempDir()
	s1, s2 := webhook.NewSecret(), webhook.NewSecret()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte(s1+"\n"+s2+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	eps, err := webhook.Config{Webhooks: []webhook.EndpointConfig{
		{ID: "crm", URL: "https://crm.example.com/hooks", SecretFile: file, Events: []string{"link.reauth_required"}},
	}}.Endpoints()
	if err != nil {
		t.Fatal(err)
	}
	e := eps[0]
	if e.ID != "crm" || len(e.Keys) != 2 || !e.Wants(tokenbroker.EventLinkReauthRequired) || e.Wants(tokenbroker.EventLinkCreated) {
		t.Fatalf("endpoint = %+v", e)
	}
	_, err = webhook.Config{Webhooks: []webhook.EndpointConfig{{URL: "https://crm.example.com/hooks", SecretFile: filepath.Join(dir, "missing")}}}.Endpoints()
	if err == nil || !strings.Contains(err.Error(), "secret_file: cannot read") {
		t.Fatalf("missing secret file: %v", err)
	}
	if err := os.WriteFile(file, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = webhook.Config{Webhooks: []webhook.EndpointConfig{{URL: "https://crm.example.com/hooks", SecretFile: file}}}.Endpoints()
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("bad secret file: %v (it must fail without showing the content)", err)
	}
}
