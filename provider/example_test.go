package provider_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/oauth2"

	"github.com/tokenbroker/tokenbroker/provider"
)

// A configuration file plus environment overrides, validated, then asked
// which provider serves a repository URL.
func ExampleRegistry_ForHost() {
	cfg, err := provider.ParseConfig(strings.NewReader(`
providers:
  - id: github
    kind: github
    client_id: Iv1.0123456789abcdef
  - id: gitlab-corp
    kind: gitlab
    base_url: https://gitlab.corp.example
    client_id: corp
`))
	if err != nil {
		panic(err)
	}
	env := []string{"TOKENBROKER_PROVIDER_GITLAB_CORP_CLIENT_SECRET=from-the-environment"}
	if err := cfg.ApplyEnv(env); err != nil {
		panic(err)
	}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	reg, err := provider.NewRegistry(context.Background(), cfg, provider.Options{})
	if err != nil {
		panic(err)
	}
	for _, repo := range []string{"github.com/org/repo", "https://gitlab.corp.example/group/project.git", "example.org/x"} {
		if p, ok := reg.ForHost(repo); ok {
			fmt.Printf("%s: %s (refresh %s ahead)\n", repo, p.ID(), p.RefreshAhead())
		} else {
			fmt.Printf("%s: no provider\n", repo)
		}
	}
	// Output:
	// github.com/org/repo: github (refresh 15m0s ahead)
	// https://gitlab.corp.example/group/project.git: gitlab-corp (refresh 5m0s ahead)
	// example.org/x: no provider
}

// Classify tells a rejected grant from a provider that is down, and an
// answer that may have been processed from one that was not. GitHub
// answers a used refresh token with HTTP 200 and an error member, which
// golang.org/x/oauth2 reports as a *RetrieveError.
func ExampleClassify() {
	err := &oauth2.RetrieveError{
		Response:         &http.Response{StatusCode: http.StatusOK},
		ErrorCode:        "bad_refresh_token",
		ErrorDescription: "The refresh token passed is incorrect or expired.",
	}
	pe := provider.Classify("github", err)
	fmt.Println(pe.Class, pe.Reason())

	pe = provider.Classify("github", fmt.Errorf("post: %w", context.DeadlineExceeded))
	fmt.Println(pe.Class, errors.Is(pe, context.DeadlineExceeded))
	// Output:
	// rejected bad_refresh_token: The refresh token passed is incorrect or expired.
	// uncertain true
}
