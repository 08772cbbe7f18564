package fakeidp_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/tokenbroker/tokenbroker/fakeidp"
)

// A workload JWT minted over HTTP verifies against the discovery
// document's keys (checked with go-oidc, independently of tokenbroker's
// own verifier) and carries the requested claims, typed; after a key
// rotation that retires the old key, new JWTs verify and old ones do not.
func TestWorkloadTokenEndpoint(t *testing.T) {
	t.Parallel()
	clock := NewClock()
	s := MustStart(t, fakeidp.Config{OIDC: true, Now: clock.Now})
	mint := func() string {
		r := MustPost(t, s, fakeidp.PathAdminWorkloadToken, url.Values{
			"sub": {"repo:acme/app"}, "aud": {"tb"}, "ttl": {"5m"}, "jti": {"j1"},
			"claim": {"actor=alice", "run_attempt=2", "ref_protected=true"},
		})
		wantStatus(t, r, 200)
		if r.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control %q", r.Header.Get("Cache-Control"))
		}
		return r.Str("token")
	}
	ctx := oidc.ClientContext(context.Background(), noRedirects)
	provider, err := oidc.NewProvider(ctx, s.URL())
	if err != nil {
		t.Fatal(err)
	}
	verifier := provider.VerifierContext(ctx, &oidc.Config{ClientID: "tb", Now: clock.Now})
	raw := mint()
	tok, err := verifier.Verify(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Actor        string `json:"actor"`
		RunAttempt   int    `json:"run_attempt"`
		RefProtected bool   `json:"ref_protected"`
		JTI          string `json:"jti"`
		IAT, NBF     int64
	}
	if err := tok.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if tok.Subject != "repo:acme/app" || c.Actor != "alice" || c.RunAttempt != 2 || !c.RefProtected || c.JTI != "j1" {
		t.Errorf("claims %+v sub %q", c, tok.Subject)
	}
	if got := tok.Expiry.Sub(clock.Now()); got.Minutes() != 5 {
		t.Errorf("lifetime %v, want 5m", got)
	}

	wantStatus(t, MustPost(t, s, fakeidp.PathAdminRotateKey, url.Values{"retire": {"true"}}), 200)
	if _, err := verifier.Verify(ctx, mint()); err != nil {
		t.Fatalf("JWT of the new key: %v", err)
	}
	// A fresh verifier (go-oidc's key set may still answer from the cache
	// it is replacing): the retired key is gone from the JWKS.
	fresh := provider.VerifierContext(ctx, &oidc.Config{ClientID: "tb", Now: clock.Now})
	if _, err := fresh.Verify(ctx, raw); err == nil {
		t.Fatal("JWT of the retired key still verifies")
	}

	wantError(t, MustPost(t, s, fakeidp.PathAdminWorkloadToken, url.Values{"aud": {"tb"}}), 400, "invalid_request")
	noOIDC := MustStart(t, fakeidp.Config{})
	wantError(t, MustPost(t, noOIDC, fakeidp.PathAdminWorkloadToken, url.Values{"sub": {"x"}, "aud": {"tb"}}), 400, "invalid_request")
}
