package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/httpapi/httpapitest"
)

func TestTokenGet(t *testing.T) {
	env := httpapitest.MustStart(t, httpapitest.Options{})
	issued := env.MustLink(t, "alice", httpapitest.ProviderDemo, "alice")
	key := env.MustKey(t, "reader", []string{tokenbroker.ScopeTokensRead, tokenbroker.ScopeLinksWrite}, nil, nil)
	base := []string{"token", "get", "--url", env.URL, "--api-key", key, "--user", "alice", "--provider", httpapitest.ProviderDemo}

	code, out, errs := runCLI(t, base...)
	if code != 0 || strings.TrimSpace(out) != issued.AccessToken {
		t.Fatalf("token get: exit %d: %q %s", code, out, errs)
	}
	code, out, _ = runCLI(t, append(base, "--json")...)
	var v map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v["access_token"] != issued.AccessToken || v["expiry"] == nil {
		t.Fatalf("token get --json: exit %d: %s", code, out)
	}
	if strings.Contains(out, issued.RefreshToken) {
		t.Fatal("refresh token printed")
	}

	// A broken link: exit 3 with the connect URL.
	env.IDP.RevokeFamilyOf(issued.RefreshToken)
	env.Clock.Advance(2 * time.Hour)
	code, _, errs = runCLI(t, base...)
	if code != exitReauthRequired || !strings.Contains(errs, env.URL+"/connect/") {
		t.Fatalf("reauth: exit %d: %s", code, errs)
	}
	code, _, errs = runCLI(t, "token", "get", "--url", env.URL, "--api-key", key+"x", "--user", "alice", "--provider", "demo")
	if code != 1 || !strings.Contains(errs, "unauthorized") || strings.Count(errs, "tokenbroker:") != 1 {
		t.Fatalf("bad key: exit %d: %s", code, errs)
	}
	// An unreachable server: one line, one prefix.
	code, _, errs = runCLI(t, "token", "get", "--url", "http://127.0.0.1:1", "--api-key", key, "--user", "alice", "--provider", "demo")
	if code != 1 || strings.Count(errs, "tokenbroker:") != 1 || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Fatalf("unreachable server: exit %d: %q", code, errs)
	}
	env.Logs.AssertNoSecrets(t)
}
