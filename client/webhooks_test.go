package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/client"
	"github.com/tokenbroker/tokenbroker/store/storetest"
)

func TestDeadLetters(t *testing.T) {
	ctx := context.Background()
	env, c, admin := MustClient(t)
	storetest.MustEnqueue(t, env.Store, storetest.NewEvent(tokenbroker.EventLinkDeleted, "alice", "demo"))
	d, err := env.Store.ClaimDeliveries(ctx, "test", time.Minute, 1)
	if err != nil || len(d) != 1 {
		t.Fatalf("claim: %v %v", d, err)
	}
	if ok, err := env.Store.KillDelivery(ctx, d[0], 410, "gone"); !ok || err != nil {
		t.Fatalf("kill: %v %v", ok, err)
	}
	page, err := admin.DeadLetters(ctx, client.DeadLetterQuery{Limit: 5})
	if err != nil || len(page.DeadLetters) != 1 || page.DeadLetters[0].LastStatus != 410 || page.DeadLetters[0].Type != "link.deleted" {
		t.Fatalf("DeadLetters = %+v, %v", page, err)
	}
	if _, err := c.DeadLetters(ctx, client.DeadLetterQuery{}); !client.IsCode(err, client.CodeForbidden) {
		t.Fatalf("non-admin: %v", err)
	}
	r, err := admin.RetryDeadLetter(ctx, page.DeadLetters[0].ID)
	if err != nil || r.Status != "pending" {
		t.Fatalf("RetryDeadLetter = %+v, %v", r, err)
	}
	if _, err := admin.RetryDeadLetter(ctx, r.ID); !client.IsCode(err, client.CodeNotFound) {
		t.Fatalf("second retry: %v", err)
	}
}
