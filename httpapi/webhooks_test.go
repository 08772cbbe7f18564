package httpapi_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apiv1"
	"github.com/tokenbroker/tokenbroker/store/storetest"
)

// mustDeadLetters makes n dead letters for endpoint crm the way the
// dispatcher does (claim, route, claim, kill) and returns their ids.
func mustDeadLetters(t *testing.T, s tokenbroker.Store, n int) []int64 {
	t.Helper()
	ctx := t.Context()
	for i := range n {
		storetest.MustEnqueue(t, s, tokenbroker.Event{Type: tokenbroker.EventLinkReauthRequired,
			UserID: fmt.Sprintf("user%d", i), ProviderID: demo, Reason: "revoked"})
	}
	unrouted, err := s.ClaimDeliveries(ctx, "test", time.Minute, n)
	if err != nil || len(unrouted) != n {
		t.Fatalf("claim: %d, %v", len(unrouted), err)
	}
	for _, d := range unrouted {
		if _, err := s.RouteDelivery(ctx, d, []string{"crm"}); err != nil {
			t.Fatal(err)
		}
	}
	routed, err := s.ClaimDeliveries(ctx, "test", time.Minute, n)
	if err != nil || len(routed) != n {
		t.Fatalf("claim routed: %d, %v", len(routed), err)
	}
	var ids []int64
	for _, d := range routed {
		if ok, err := s.KillDelivery(ctx, d, 503, "the receiver answered 503 Service Unavailable"); !ok || err != nil {
			t.Fatalf("kill: %v, %v", ok, err)
		}
		ids = append(ids, d.ID)
	}
	return ids
}

func TestDeadLetters(t *testing.T) {
	env := MustEnv(t)
	mustDeadLetters(t, env.Store, 3)

	resp, body := env.Do(t, "GET", path("webhooks", "dead-letters")+"?limit=2", env.AdminKey, "")
	var page apiv1.DeadLetterPage
	MustDecode(t, resp, body, http.StatusOK, &page)
	if len(page.DeadLetters) != 2 || page.NextBeforeID == 0 {
		t.Fatalf("first page = %s", body)
	}
	dl := page.DeadLetters[0]
	if dl.Type != string(tokenbroker.EventLinkReauthRequired) || dl.UserID != "user2" || dl.Endpoint != "crm" ||
		dl.LastStatus != 503 || dl.Status != string(tokenbroker.DeliveryDead) || dl.DeadAt.IsZero() || dl.EventID == "" || dl.Attempts != 1 {
		t.Fatalf("newest dead letter = %+v", dl)
	}
	resp, body = env.Do(t, "GET", fmt.Sprintf("%s?before_id=%d", path("webhooks", "dead-letters"), page.NextBeforeID), env.AdminKey, "")
	var rest apiv1.DeadLetterPage
	MustDecode(t, resp, body, http.StatusOK, &rest)
	if len(rest.DeadLetters) != 1 || rest.DeadLetters[0].UserID != "user0" || rest.NextBeforeID != 0 {
		t.Fatalf("second page = %s", body)
	}

	// Retrying sends it back to the outbox and leaves an audit event.
	resp, body = env.Do(t, "POST", path("webhooks", "dead-letters", fmt.Sprint(dl.ID), "retry"), env.AdminKey, "")
	var retried apiv1.DeadLetter
	MustDecode(t, resp, body, http.StatusOK, &retried)
	if retried.ID != dl.ID || retried.Status != string(tokenbroker.DeliveryPending) || retried.Attempts != 0 || !retried.DeadAt.IsZero() {
		t.Fatalf("retried = %s", body)
	}
	st, err := env.Store.OutboxStats(t.Context())
	if err != nil || st.Pending != 1 || st.Dead != 2 {
		t.Fatalf("OutboxStats = %+v, %v; want 1 pending, 2 dead", st, err)
	}
	evs := MustAudit(t, env, tokenbroker.AuditFilter{Action: tokenbroker.AuditWebhookRetry})
	if len(evs) != 1 || evs[0].UserID != "user2" {
		t.Fatalf("audit = %+v, want one webhook.retry", evs)
	}
	resp, body = env.Do(t, "POST", path("webhooks", "dead-letters", fmt.Sprint(dl.ID), "retry"), env.AdminKey, "")
	MustProblem(t, resp, body, http.StatusNotFound, tokenbroker.ENOTFOUND)
}

func TestDeadLettersRefuses(t *testing.T) {
	env := MustEnv(t)
	mustDeadLetters(t, env.Store, 1)
	platformKey := env.MustKey(t, "platform", platform, nil, nil)
	restricted := env.MustKey(t, "restricted-admin", []string{tokenbroker.ScopeAdmin}, []string{"alice"}, nil)
	for _, key := range []string{platformKey, restricted} {
		resp, body := env.Do(t, "GET", path("webhooks", "dead-letters"), key, "")
		MustProblem(t, resp, body, http.StatusForbidden, tokenbroker.EFORBIDDEN)
		resp, body = env.Do(t, "POST", path("webhooks", "dead-letters", "1", "retry"), key, "")
		MustProblem(t, resp, body, http.StatusForbidden, tokenbroker.EFORBIDDEN)
	}
	resp, body := env.Do(t, "GET", path("webhooks", "dead-letters"), "", "")
	MustProblem(t, resp, body, http.StatusUnauthorized, tokenbroker.EUNAUTHORIZED)
	for _, q := range []string{"?limit=0", "?limit=x", "?before_id=-1", "?nope=1"} {
		resp, body := env.Do(t, "GET", path("webhooks", "dead-letters")+q, env.AdminKey, "")
		MustProblem(t, resp, body, http.StatusBadRequest, tokenbroker.EINVALID)
	}
	resp, body = env.Do(t, "POST", path("webhooks", "dead-letters", "abc", "retry"), env.AdminKey, "")
	MustProblem(t, resp, body, http.StatusBadRequest, tokenbroker.EINVALID)
	// Nothing changed.
	if st, err := env.Store.OutboxStats(t.Context()); err != nil || st.Dead != 1 || st.Pending != 0 {
		t.Fatalf("OutboxStats = %+v, %v", st, err)
	}
}
