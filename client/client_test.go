package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/client"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/httpapi/httpapitest"
)

var allScopes = []string{tokenbroker.ScopeTokensRead, tokenbroker.ScopeLinksRead, tokenbroker.ScopeLinksWrite}

// MustClient starts a fresh environment and returns a platform client and
// an admin client for it.
func MustClient(t *testing.T) (env *httpapitest.Env, platform, admin *client.Client) {
	t.Helper()
	env = httpapitest.MustStart(t, httpapitest.Options{ReturnURLAllowList: []string{"https://app.example.com"}})
	t.Cleanup(func() { env.Logs.AssertNoSecrets(t) })
	key := env.MustKey(t, "platform", allScopes, nil, nil)
	return env, client.New(env.URL, key), client.New(env.URL, env.AdminKey)
}

func TestLinksLifecycle(t *testing.T) {
	ctx := context.Background()
	env, c, _ := MustClient(t)

	pair, err := env.IDP.IssueToken("bob", "read")
	if err != nil {
		t.Fatal(err)
	}
	env.Logs.AddSecret(pair.AccessToken, pair.RefreshToken)
	l, err := c.ImportLink(ctx, "bob", "demo", client.ImportRequest{
		AccessToken: pair.AccessToken, RefreshToken: pair.RefreshToken, Expiry: &pair.Expiry, Scopes: []string{"read"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if l.State != "active" || l.AccountLogin != "bob" || l.Generation != 1 || !l.Expiry.Equal(pair.Expiry) {
		t.Fatalf("imported %+v", l)
	}
	got, err := c.Link(ctx, "bob", "demo")
	if err != nil || got.AccountID != "1002" {
		t.Fatalf("link %+v %v", got, err)
	}
	links, err := c.Links(ctx, "bob")
	if err != nil || len(links) != 1 {
		t.Fatalf("links %+v %v", links, err)
	}
	tok, err := c.Token(ctx, "bob", "demo", 10*time.Minute)
	if err != nil || tok.AccessToken != pair.AccessToken || tok.Expiry.IsZero() {
		t.Fatalf("token %v %v", tok != nil, err)
	}
	res, err := c.DeleteLink(ctx, "bob", "demo")
	if err != nil || !res.Deleted || res.Revocation != "revoked" {
		t.Fatalf("delete %+v %v", res, err)
	}
	if _, err := c.Link(ctx, "bob", "demo"); !client.IsCode(err, client.CodeNotFound) {
		t.Fatalf("link after delete: %v", err)
	}
	ps, err := c.Providers(ctx)
	if err != nil || len(ps) != 2 || !ps[0].SupportsRevoke && !ps[1].SupportsRevoke {
		t.Fatalf("providers %+v %v", ps, err)
	}
}

func TestDeviceFlow(t *testing.T) {
	ctx := context.Background()
	env, c, _ := MustClient(t)
	da, err := c.StartDevice(ctx, "dave", "demo")
	if err != nil {
		t.Fatal(err)
	}
	if da.UserCode == "" || da.Interval < time.Second || da.VerificationURI == "" {
		t.Fatalf("device %+v", da)
	}
	st, err := c.PollDevice(ctx, "dave", "demo", da.ID)
	if err != nil || st.Status != client.DevicePending {
		t.Fatalf("poll %+v %v", st, err)
	}
	if err := env.IDP.ApproveDevice(da.UserCode, "alice"); err != nil {
		t.Fatal(err)
	}
	env.Clock.Advance(da.Interval)
	st, err = c.PollDevice(ctx, "dave", "demo", da.ID)
	if err != nil || st.Status != client.DeviceComplete || st.Link == nil || st.Link.AccountLogin != "alice" {
		t.Fatalf("poll after approval %+v %v", st, err)
	}
	tok, err := c.Token(ctx, "dave", "demo", 0)
	if err != nil {
		t.Fatal(err)
	}
	env.Logs.AddSecret(tok.AccessToken)
}

func TestAPIKeysAndAudit(t *testing.T) {
	ctx := context.Background()
	env, c, admin := MustClient(t)
	env.MustLink(t, "alice", "demo", "alice")

	k, err := admin.CreateAPIKey(ctx, client.APIKeyRequest{Name: "ci", Scopes: []string{"tokens:read"}, Users: []string{"alice"}})
	if err != nil {
		t.Fatal(err)
	}
	env.Logs.AddSecret(k.Key)
	ci := client.New(env.URL, k.Key)
	if _, err := ci.Token(ctx, "alice", "demo", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := ci.Token(ctx, "bob", "demo", 0); !client.IsCode(err, client.CodeForbidden) {
		t.Fatalf("restricted key on bob: %v", err)
	}
	keys, err := admin.ListAPIKeys(ctx)
	if err != nil || len(keys) != 3 {
		t.Fatalf("keys %+v %v", keys, err)
	}
	if _, err := c.ListAPIKeys(ctx); !client.IsCode(err, client.CodeForbidden) {
		t.Fatalf("non-admin list: %v", err)
	}
	if err := admin.RevokeAPIKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	var e *client.Error
	if _, err := ci.Token(ctx, "alice", "demo", 0); !errors.As(err, &e) || e.Status != 401 || e.Code != client.CodeUnauthorized {
		t.Fatalf("revoked key: %v", err)
	}
	if err := env.Auditor.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	page, err := admin.Audit(ctx, client.AuditQuery{UserID: "alice", Action: "token.read", Since: time.Now().Add(-time.Hour)})
	if err != nil || len(page.Events) != 1 || page.Events[0].Actor != "key:"+k.Prefix {
		t.Fatalf("audit %+v %v", page, err)
	}
	page, err = admin.Audit(ctx, client.AuditQuery{Action: "apikey.revoke", Limit: 10})
	if err != nil || len(page.Events) != 1 {
		t.Fatalf("audit revoke %+v %v", page, err)
	}
}

// The problem document's members reach *client.Error.
func TestErrors(t *testing.T) {
	ctx := context.Background()
	env, c, _ := MustClient(t)
	pair := env.MustLink(t, "alice", "demo", "alice")
	env.MustLink(t, "bob", "demo", "bob")

	env.IDP.RevokeFamilyOf(pair.RefreshToken)
	env.Clock.Advance(fakeidp.DefaultAccessTokenTTL + time.Minute)
	var e *client.Error
	_, err := c.Token(ctx, "alice", "demo", 0)
	if !errors.As(err, &e) || e.Code != client.CodeReauthRequired || e.Status != 409 || !strings.HasPrefix(e.ConnectURL, env.URL+"/connect/") {
		t.Fatalf("reauth: %#v", err)
	}

	env.IDP.SetFaults(fakeidp.Faults{P503: 1, Target: fakeidp.TargetRefresh})
	_, err = c.Token(ctx, "bob", "demo", 0)
	if !errors.As(err, &e) || e.Code != client.CodeProviderUnavailable || e.RetryAfter < time.Second {
		t.Fatalf("unavailable: %#v", err)
	}
	if _, err := c.CreateConnectSession(ctx, client.ConnectSessionRequest{UserID: "bob", ReturnURL: "https://evil.example.com"}); !client.IsCode(err, client.CodeInvalidRequest) {
		t.Fatalf("off-list return_url: %v", err)
	}
	if _, err := client.New(env.URL, "tbk_bad").Providers(ctx); !client.IsCode(err, client.CodeUnauthorized) {
		t.Fatalf("bad key: %v", err)
	}
	if _, err := client.New("http://127.0.0.1:1", "k").Providers(ctx); err == nil || errors.As(err, &e) {
		t.Fatalf("unreachable server: %v", err)
	}
}

// The TokenSource asks the broker only when its token is about to expire,
// and never holds a refresh token.
func TestTokenSourceReuses(t *testing.T) {
	ctx := context.Background()
	env, c, _ := MustClient(t)
	pair := env.MustLink(t, "alice", "demo", "alice")

	ts := c.TokenSource(ctx, "alice", "demo")
	for range 3 {
		tok, err := ts.Token()
		if err != nil {
			t.Fatal(err)
		}
		if tok.AccessToken != pair.AccessToken || tok.RefreshToken != "" || tok.Expiry.IsZero() {
			t.Fatalf("token source gave %v refresh=%v", tok.Expiry, tok.RefreshToken != "")
		}
	}
	if err := env.Auditor.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	evs, err := env.Store.ListAudit(ctx, tokenbroker.AuditFilter{Action: tokenbroker.AuditTokenRead})
	if err != nil || len(evs) != 1 {
		t.Fatalf("broker asked %d times, want once (%v)", len(evs), err)
	}
	// Errors come through typed.
	_, err = c.TokenSource(ctx, "nobody", "demo").Token()
	if !client.IsCode(err, client.CodeNotFound) {
		t.Fatalf("token source error: %v", err)
	}
}

// With tokens shorter-lived than the source's margin, the source still
// works.
func TestTokenSourceShortLivedTokens(t *testing.T) {
	ctx := context.Background()
	env := httpapitest.MustStart(t, httpapitest.Options{IDP: fakeidp.Config{AccessTokenTTL: 40 * time.Second}})
	key := env.MustKey(t, "reader", []string{tokenbroker.ScopeTokensRead}, nil, nil)
	pair := env.MustLink(t, "alice", "demo", "alice")
	env.IDP.ExpireAccessTokensOf(pair.AccessToken)
	env.Clock.Advance(time.Minute)
	tok, err := client.New(env.URL, key).TokenSource(ctx, "alice", "demo").Token()
	if err != nil {
		t.Fatal(err)
	}
	env.Logs.AddSecret(tok.AccessToken)
	if tok.AccessToken == pair.AccessToken || tok.RefreshToken != "" {
		t.Fatal("want a fresh access token and no refresh token")
	}
	env.Logs.AssertNoSecrets(t)
}
