package provider

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const sampleYAML = `
providers:
  - id: github
    kind: github
    client_id: Iv1.abc
    client_secret_file: /run/secrets/gh
    refresh_ahead: 20m
    extra_token_keys: [refresh_token_expires_in]
  - id: gitlab-corp
    kind: gitlab
    base_url: https://gitlab.corp.example
    client_id: gl
    client_secret: file-secret
    scopes: [read_user, api]
  - id: entra
    kind: microsoft
    tenant: contoso.onmicrosoft.com
    client_id: 00000000-0000-0000-0000-000000000001
`

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig(strings.NewReader(sampleYAML))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Providers) != 3 {
		t.Fatalf("%d providers", len(cfg.Providers))
	}
	gh := cfg.Providers[0]
	if gh.RefreshAhead == nil || time.Duration(*gh.RefreshAhead) != 20*time.Minute || gh.ClientSecretFile != "/run/secrets/gh" {
		t.Errorf("github = %+v", gh)
	}
	r := cfg.Providers[1].Resolve()
	if r.TokenURL != "https://gitlab.corp.example/oauth/token" || r.Hosts != `gitlab\.corp\.example` ||
		time.Duration(*r.RefreshAhead) != DefaultRefreshAhead || r.DisplayName != "GitLab" {
		t.Errorf("gitlab resolved = %+v", r)
	}
	m := cfg.Providers[2].Resolve()
	if m.TokenURL != "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token" || !slices.Contains(m.Scopes, "offline_access") {
		t.Errorf("microsoft resolved = %+v", m)
	}

	for _, bad := range []string{
		"providers:\n  - id: x\n    kind: github\n    clientid: typo\n", // unknown field
		"providers:\n  - id: x\n    refresh_ahead: 5 minutes\n",
		"providers: {}\n",
	} {
		if _, err := ParseConfig(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseConfig(%q) succeeded", bad)
		}
	}
	if cfg, err := ParseConfig(strings.NewReader("")); err != nil || len(cfg.Providers) != 0 {
		t.Errorf("empty input: %v %v", cfg, err)
	}
}

func TestValidate(t *testing.T) {
	ok := func() ProviderConfig {
		return ProviderConfig{ID: "p", Kind: KindOAuth2, ClientID: "c", AuthURL: "https://idp.example/a", TokenURL: "https://idp.example/t"}
	}
	d := func(v time.Duration) *Duration { x := Duration(v); return &x }
	cases := []struct {
		name  string
		edit  func(pc *ProviderConfig)
		field string // "" means valid
	}{
		{"valid", func(pc *ProviderConfig) {}, ""},
		{"loopback http ok", func(pc *ProviderConfig) { pc.TokenURL = "http://127.0.0.1:9/t" }, ""},
		{"insecure_http", func(pc *ProviderConfig) { pc.TokenURL = "http://idp.internal/t"; pc.InsecureHTTP = true }, ""},
		{"missing id", func(pc *ProviderConfig) { pc.ID = "" }, "id"},
		{"bad id", func(pc *ProviderConfig) { pc.ID = "Git Hub" }, "id"},
		{"missing kind", func(pc *ProviderConfig) { pc.Kind = "" }, "kind"},
		{"unknown kind", func(pc *ProviderConfig) { pc.Kind = "myspace" }, "kind"},
		{"missing client_id", func(pc *ProviderConfig) { pc.ClientID = "" }, "client_id"},
		{"both secrets", func(pc *ProviderConfig) { pc.ClientSecret, pc.ClientSecretFile = "x", "/f" }, "client_secret"},
		{"bad auth_style", func(pc *ProviderConfig) { pc.AuthStyle = "auto" }, "auth_style"},
		{"bad scope", func(pc *ProviderConfig) { pc.Scopes = []string{"a b"} }, "scopes"},
		{"plain pkce", func(pc *ProviderConfig) { pc.PKCEMethods = []string{"plain"} }, "pkce_methods"},
		{"pkce none+S256", func(pc *ProviderConfig) { pc.PKCEMethods = []string{"none", "S256"} }, "pkce_methods"},
		{"negative refresh_ahead", func(pc *ProviderConfig) { pc.RefreshAhead = d(-time.Minute) }, "refresh_ahead"},
		{"huge refresh_ahead", func(pc *ProviderConfig) { pc.RefreshAhead = d(48 * time.Hour) }, "refresh_ahead"},
		{"standard extra key", func(pc *ProviderConfig) { pc.ExtraTokenKeys = []string{"refresh_token"} }, "extra_token_keys"},
		{"bad hosts", func(pc *ProviderConfig) { pc.Hosts = "git(hub" }, "hosts"},
		{"missing token_url", func(pc *ProviderConfig) { pc.TokenURL = "" }, "token_url"},
		{"relative url", func(pc *ProviderConfig) { pc.AuthURL = "/authorize" }, "auth_url"},
		{"http url", func(pc *ProviderConfig) { pc.TokenURL = "http://idp.example/t" }, "token_url"},
		{"ftp url", func(pc *ProviderConfig) { pc.RevokeURL = "ftp://idp.example/r" }, "revoke_url"},
		{"url with credentials", func(pc *ProviderConfig) { pc.ValidateURL = "https://u:hunter2@idp.example/me" }, "validate_url"},
		{"gitea needs base_url", func(pc *ProviderConfig) { *pc = ProviderConfig{ID: "g", Kind: KindGitea, ClientID: "c"} }, "base_url"},
		{"oidc needs issuer", func(pc *ProviderConfig) { *pc = ProviderConfig{ID: "o", Kind: KindOIDC, ClientID: "c"} }, "issuer"},
		{"issuer only for oidc", func(pc *ProviderConfig) { pc.Issuer = "https://idp.example" }, "issuer"},
		{"base_url not for google", func(pc *ProviderConfig) {
			*pc = ProviderConfig{ID: "g", Kind: KindGoogle, ClientID: "c", BaseURL: "https://x.example"}
		}, "base_url"},
		{"tenant only for microsoft", func(pc *ProviderConfig) { pc.Tenant = "contoso" }, "tenant"},
		{"bad tenant", func(pc *ProviderConfig) {
			*pc = ProviderConfig{ID: "m", Kind: KindMicrosoft, ClientID: "c", Tenant: "a/b"}
		}, "tenant"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pc := ok()
			pc.ClientSecret = "hunter2-secret"
			c.edit(&pc)
			err := (&Config{Providers: []ProviderConfig{pc}}).Validate()
			if c.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate = %v, want a *ValidationError", err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Errorf("Validate = %v, want the first error on field %s", err, c.field)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error shows a secret: %v", err)
			}
		})
	}
	t.Run("duplicates and env collisions", func(t *testing.T) {
		a, b, c := ok(), ok(), ok()
		c.ID = "p_1"
		b.ID = "p-1"
		err := (&Config{Providers: []ProviderConfig{a, a, b, c}}).Validate()
		if err == nil || !strings.Contains(err.Error(), "duplicate id") || !strings.Contains(err.Error(), "same environment name P_1") {
			t.Errorf("Validate = %v", err)
		}
	})
	t.Run("empty", func(t *testing.T) {
		if err := (&Config{}).Validate(); err != nil {
			t.Errorf("an empty configuration is invalid: %v", err)
		}
	})
	t.Run("every error listed", func(t *testing.T) {
		err := (&Config{Providers: []ProviderConfig{{ID: "x", Kind: "nope"}}}).Validate()
		var ve *ValidationError
		if !errors.As(err, &ve) || len(ve.Errors) != 2 {
			t.Errorf("want kind and client_id errors, got %v", err)
		}
	})
}

func TestApplyEnv(t *testing.T) {
	cases := []struct {
		name    string
		yaml    string
		env     []string
		want    []ProviderConfig
		wantErr string
	}{
		{
			name: "override file fields",
			yaml: "providers:\n  - id: gitlab-corp\n    kind: gitlab\n    client_id: a\n    client_secret_file: /f\n",
			env: []string{
				"TOKENBROKER_PROVIDER_GITLAB_CORP_CLIENT_ID=b",
				"TOKENBROKER_PROVIDER_GITLAB_CORP_CLIENT_SECRET=envsecret",
				"TOKENBROKER_PROVIDER_GITLAB_CORP_SCOPES=read_user, api",
				"TOKENBROKER_PROVIDER_GITLAB_CORP_REFRESH_AHEAD=90s",
				"UNRELATED=1",
				"TOKENBROKER_PROVIDER_TIMEOUT=10s", // serve's own setting
				"TOKENBROKER_PROVIDERS_FILE=/etc/p.yaml",
			},
			want: []ProviderConfig{{ID: "gitlab-corp", Kind: "gitlab", ClientID: "b", ClientSecret: "envsecret",
				Scopes: []string{"read_user", "api"}, RefreshAhead: ptrDuration(90 * time.Second)}},
		},
		{
			name: "env-only providers, sorted after the file's",
			yaml: "providers:\n  - id: z\n    kind: github\n    client_id: z\n",
			env: []string{
				"TOKENBROKER_PROVIDER_GITHUB_KIND=github",
				"TOKENBROKER_PROVIDER_GITHUB_CLIENT_ID=Iv1",
				"TOKENBROKER_PROVIDER_GITHUB_CLIENT_SECRET_FILE=/run/gh",
				"TOKENBROKER_PROVIDER_ACME_SSO_KIND=oidc",
				"TOKENBROKER_PROVIDER_ACME_SSO_ID=acme-sso",
				"TOKENBROKER_PROVIDER_ACME_SSO_ISSUER=https://sso.acme.example",
				"TOKENBROKER_PROVIDER_ACME_SSO_CLIENT_ID=c",
				"TOKENBROKER_PROVIDER_ACME_SSO_INSECURE_HTTP=false",
			},
			want: []ProviderConfig{
				{ID: "z", Kind: "github", ClientID: "z"},
				{ID: "acme-sso", Kind: "oidc", Issuer: "https://sso.acme.example", ClientID: "c"},
				{ID: "github", Kind: "github", ClientID: "Iv1", ClientSecretFile: "/run/gh"},
			},
		},
		{
			name: "known provider wins the split",
			yaml: "providers:\n  - id: my-client\n    kind: github\n    client_id: a\n",
			env:  []string{"TOKENBROKER_PROVIDER_MY_CLIENT_ID=renamed"},
			want: []ProviderConfig{{ID: "renamed", Kind: "github", ClientID: "a"}},
		},
		{
			name: "pkce none",
			env:  []string{"TOKENBROKER_PROVIDER_X_PKCE_METHODS=none", "TOKENBROKER_PROVIDER_X_KIND=slack"},
			want: []ProviderConfig{{ID: "x", Kind: "slack", PKCEMethods: []string{"none"}}},
		},
		{
			name:    "unknown field",
			env:     []string{"TOKENBROKER_PROVIDER_GITHUB_CLIENTID=x"},
			wantErr: "TOKENBROKER_PROVIDER_GITHUB_CLIENTID: unknown provider field",
		},
		{
			name:    "bad duration",
			env:     []string{"TOKENBROKER_PROVIDER_GITHUB_REFRESH_AHEAD=soon"},
			wantErr: "TOKENBROKER_PROVIDER_GITHUB_REFRESH_AHEAD",
		},
		{
			name:    "bad bool",
			env:     []string{"TOKENBROKER_PROVIDER_GITHUB_INSECURE_HTTP=perhaps"},
			wantErr: "want true or false",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseConfig(strings.NewReader(c.yaml))
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.ApplyEnv(c.env)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("ApplyEnv = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg.Providers, c.want) {
				t.Errorf("providers = %+v\nwant %+v", cfg.Providers, c.want)
			}
		})
	}
}

func ptrDuration(d time.Duration) *Duration { x := Duration(d); return &x }

func TestSecretFile(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("from-file-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := "providers:\n  - id: gh\n    kind: github\n    client_id: Iv1\n    client_secret_file: " + secretFile + "\n"
	cfg, err := ParseConfig(strings.NewReader(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.ApplyEnv([]string{"TOKENBROKER_PROVIDER_GH_DISPLAY_NAME=GitHub.com"}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Providers[0].DisplayName != "GitHub.com" {
		t.Errorf("env not applied: %+v", cfg.Providers[0])
	}
	s, err := cfg.Providers[0].LoadSecret()
	if err != nil || s != "from-file-secret" {
		t.Errorf("LoadSecret = %q, %v", s, err)
	}
	p := MustNew(t, cfg.Providers[0], nil)
	if p.secret != "from-file-secret" {
		t.Error("New did not read the secret file")
	}

	for _, c := range []struct{ content, want string }{{"", "is empty"}, {"a\nb\n", "more than one line"}} {
		f := filepath.Join(dir, "s2")
		os.WriteFile(f, []byte(c.content), 0o600)
		pc := ProviderConfig{ID: "x", ClientSecretFile: f}
		if _, err := pc.LoadSecret(); err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "a\nb") {
			t.Errorf("LoadSecret(%q) = %v", c.content, err)
		}
	}
	pc := ProviderConfig{ID: "x", ClientSecretFile: filepath.Join(dir, "nope")}
	var fe *FieldError
	if _, err := pc.LoadSecret(); !errors.As(err, &fe) || fe.Field != "client_secret_file" {
		t.Errorf("LoadSecret of a missing file = %v", err)
	}
}

func TestRegistry(t *testing.T) {
	cfg, err := ParseConfig(strings.NewReader(`
providers:
  - id: github
    kind: github
    client_id: a
  - id: ghe
    kind: github
    base_url: https://ghe.corp.example
    client_id: b
  - id: gitlab-corp
    kind: gitlab
    base_url: https://gitlab.corp.example:8443
    client_id: c
  - id: ado
    kind: azure-devops
    client_id: d
  - id: google
    kind: google
    client_id: e
`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRegistry(t.Context(), cfg, testOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.List()) != 5 || r.List()[0].ID() != "github" {
		t.Errorf("List = %v", r.List())
	}
	if p, err := r.Provider("ghe"); err != nil || p.Kind() != KindGitHub {
		t.Errorf("Provider(ghe) = %v, %v", p, err)
	}
	if _, err := r.Provider("nope"); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Errorf("Provider(nope) = %v", err)
	}
	for host, want := range map[string]string{
		"github.com":                       "github",
		"GitHub.com/org/repo":              "github",
		"https://github.com/org/repo.git":  "github",
		"git@github.com:org/repo.git":      "github",
		"ghe.corp.example":                 "ghe",
		"gitlab.corp.example:8443/group/p": "gitlab-corp",
		"https://gitlab.corp.example/x":    "gitlab-corp",
		"dev.azure.com/org/project":        "ado",
		"contoso.visualstudio.com":         "ado",
		"evilgithub.com":                   "",
		"github.com.evil.example":          "",
		"accounts.google.com":              "",
		"":                                 "",
	} {
		p, ok := r.ForHost(host)
		got := ""
		if ok {
			got = p.ID()
		}
		if got != want {
			t.Errorf("ForHost(%q) = %q, want %q", host, got, want)
		}
	}
	gh, _ := r.Provider("github")
	info := gh.Info()
	if info.Hosts != `github\.com` || !info.SupportsDevice || !info.SupportsRevoke || info.RefreshAhead != 15*time.Minute || info.DisplayName != "GitHub" {
		t.Errorf("Info = %+v", info)
	}

	bad := &Config{Providers: []ProviderConfig{{ID: "x", Kind: KindGitHub}}}
	if _, err := NewRegistry(t.Context(), bad, testOptions(nil)); err == nil {
		t.Error("NewRegistry accepted an invalid config")
	}
}
