package httpapi_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apiv1"
)

// TestAuditFilterByActor: GET /api/v1/audit?actor= returns only that
// actor's events.
func TestAuditFilterByActor(t *testing.T) {
	env := MustEnv(t)
	env.MustLink(t, "alice", demo, "alice")
	reader := env.MustKey(t, "reader", readTokens, nil, nil)
	env.Do(t, "GET", path("users", "alice", "providers", demo, "token"), reader, "")
	MustAudit(t, env, tokenbroker.AuditFilter{}) // flush
	resp, body := env.Do(t, "GET", "/api/v1/audit?actor=key:"+reader[4:16], env.AdminKey, "")
	var page apiv1.AuditPage
	MustDecode(t, resp, body, http.StatusOK, &page)
	if len(page.Events) != 1 || page.Events[0].Action != tokenbroker.AuditTokenRead || page.Events[0].Actor != "key:"+reader[4:16] {
		t.Fatalf("events by the reader: %+v", page.Events)
	}
	resp, body = env.Do(t, "GET", "/api/v1/audit?actor=nobody", env.AdminKey, "")
	MustDecode(t, resp, body, http.StatusOK, &page)
	if len(page.Events) != 0 {
		t.Fatalf("events by nobody: %+v", page.Events)
	}
}

// TestAPIKeyLastUse: a request with a key records its last use, which the
// console lists.
func TestAPIKeyLastUse(t *testing.T) {
	env := MustEnv(t)
	reader := env.MustKey(t, "reader", readTokens, nil, nil)
	ctx := context.Background()
	k, err := env.Store.GetAPIKeyByPrefix(ctx, reader[4:16])
	if err != nil {
		t.Fatal(err)
	}
	if usage, err := env.Store.ListAPIKeyUsage(ctx); err != nil || !usage[k.ID].IsZero() {
		t.Fatalf("usage before any request: %v, %v", usage, err)
	}
	env.Do(t, "GET", path("providers"), reader, "")
	if usage, err := env.Store.ListAPIKeyUsage(ctx); err != nil || usage[k.ID].IsZero() {
		t.Fatalf("usage after a request: %v, %v", usage, err)
	}
}

// TestConsoleBackend: the methods the console acts through behave as the
// API's own endpoints: a revoked key fails at once on this server, a
// deleted link's grant is revoked at the provider, and a connect URL is
// one the connect pages serve.
func TestConsoleBackend(t *testing.T) {
	env := MustEnv(t)
	ctx := context.Background()
	issued := env.MustLink(t, "alice", demo, "alice")
	reader := env.MustKey(t, "reader", readTokens, nil, nil)
	if k, err := env.API.AuthenticateKey(ctx, reader); err != nil || k.Prefix != reader[4:16] {
		t.Fatalf("AuthenticateKey: %+v, %v", k, err)
	}
	if _, err := env.API.AuthenticateKey(ctx, reader[:20]+"x"+reader[21:]); tokenbroker.ErrorCode(err) != tokenbroker.EUNAUTHORIZED {
		t.Fatalf("AuthenticateKey(wrong secret): %v", err)
	}
	env.Do(t, "GET", path("providers"), reader, "") // cache the key
	k, _ := env.Store.GetAPIKeyByPrefix(ctx, reader[4:16])
	if _, err := env.API.RevokeKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if resp, _ := env.Do(t, "GET", path("providers"), reader, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("revoked key: %d", resp.StatusCode)
	}
	if _, err := env.API.RevokeKey(ctx, k.ID+100); !tokenbroker.IsNotFound(err) {
		t.Fatalf("RevokeKey(missing): %v", err)
	}

	admin, err := env.Store.GetAPIKeyByPrefix(ctx, env.AdminKey[4:16])
	if err != nil {
		t.Fatal(err)
	}
	u, _, err := env.API.CreateConnectURL(ctx, admin, "bob", []string{demo})
	if err != nil || len(u) <= len(env.URL+"/connect/") || u[:len(env.URL+"/connect/")] != env.URL+"/connect/" {
		t.Fatalf("CreateConnectURL = %q, %v", u, err)
	}

	event := func(rev string) tokenbroker.AuditEvent {
		return tokenbroker.AuditEvent{Actor: "console:test", Action: tokenbroker.AuditLinkDelete, UserID: "alice",
			ProviderID: demo, Outcome: "ok", Detail: "revocation: " + rev}
	}
	rev, err := env.API.DeleteLinkRevoking(ctx, "alice", demo, event)
	if err != nil || rev != "revoked" {
		t.Fatalf("DeleteLinkRevoking = %q, %v", rev, err)
	}
	if evs := MustAudit(t, env, tokenbroker.AuditFilter{Actor: "console:test"}); len(evs) != 1 || evs[0].Detail != "revocation: revoked" {
		t.Fatalf("the deletion's audit event: %+v", evs)
	}
	if fam, ok := env.IDP.FamilyOf(issued.RefreshToken); !ok || !fam.Revoked {
		t.Fatalf("grant after delete: %+v", fam)
	}
	if rev, err := env.API.DeleteLinkRevoking(ctx, "alice", demo, event); rev != "" || !tokenbroker.IsNotFound(err) {
		t.Fatalf("DeleteLinkRevoking(missing) = %q, %v", rev, err)
	}
}
