package tokenbroker

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"time"
)

// EventType names a lifecycle event that webhook receivers hear of.
type EventType string

// Event types. They are stable: receivers filter and switch on them.
const (
	// EventLinkCreated: a user connected (or imported) a link that did not
	// exist.
	EventLinkCreated EventType = "link.created"
	// EventLinkReauthRequired: the link's grant is broken; Reason says
	// why and the user must connect again.
	EventLinkReauthRequired EventType = "link.reauth_required"
	// EventLinkRecovered: a link that was failing is active again.
	EventLinkRecovered EventType = "link.recovered"
	// EventLinkDeleted: the link was deleted.
	EventLinkDeleted EventType = "link.deleted"
	// EventLinkDegraded: refreshing the link has failed transiently for
	// longer than a threshold; it still serves a valid token if it has one.
	EventLinkDegraded EventType = "link.degraded"
	// EventProviderMisconfigured: the provider refuses tokenbroker's
	// client (client authentication failed): no link of it can refresh.
	EventProviderMisconfigured EventType = "provider.misconfigured"
	// EventProviderRecovered: a misconfigured provider works again.
	EventProviderRecovered EventType = "provider.recovered"
)

// EventTypes lists every event type, in documentation order.
func EventTypes() []EventType {
	return []EventType{
		EventLinkCreated, EventLinkReauthRequired, EventLinkRecovered, EventLinkDeleted,
		EventLinkDegraded, EventProviderMisconfigured, EventProviderRecovered,
	}
}

// Valid reports whether t is a known event type.
func (t EventType) Valid() bool {
	for _, k := range EventTypes() {
		if t == k {
			return true
		}
	}
	return false
}

// Event is a state change worth telling a platform about. Stores write it
// to their outbox in the same transaction as the change (so a process that
// dies a moment later cannot lose it), and package webhook delivers it. An
// Event never holds a token, a key or a secret: Reason and Detail are
// codes and provider error descriptions, truncated like audit details.
type Event struct {
	// ID identifies the event across retries and replicas: it is the
	// Standard Webhooks webhook-id, by which receivers drop duplicates.
	// Empty: the store draws one with [NewEventID].
	ID   string
	Type EventType
	// Time is when the change happened; zero: the database clock when the
	// event is written.
	Time       time.Time
	UserID     string // "" for provider events
	ProviderID string
	// Reason is a short code: for link.reauth_required the typed reason
	// (revoked, inactivity, lost_refresh, scopes_changed, ...).
	Reason string
	// Detail is a human-readable explanation, at most 500 bytes.
	Detail string
}

// LinkEvent returns an event of type t about l's user and provider. Its
// time is left to the database's clock of the write that records it.
func LinkEvent(t EventType, l *Link, reason, detail string) Event {
	return Event{Type: t, UserID: l.UserID, ProviderID: l.ProviderID, Reason: reason, Detail: Truncate(detail, 500)}
}

// PutLinkEvent is the lifecycle event of a link that [LinkStore.PutLink]
// (a connect or an import) wrote over a link in state prev, "" when none
// existed: link.created for a new link, link.recovered (Reason the state it
// left) when it replaced a degraded or reauth_required one; none (false)
// when it replaced an active or idle link. Stores call it with the state
// their statement replaced, so the event is exact under concurrent writes.
func PutLinkEvent(prev LinkState, l *Link) (Event, bool) {
	switch prev {
	case "":
		return LinkEvent(EventLinkCreated, l, "", ""), true
	case LinkDegraded, LinkReauthRequired:
		return LinkEvent(EventLinkRecovered, l, string(prev), "connected again"), true
	}
	return Event{}, false
}

// Validate checks an event before it is written.
func (e *Event) Validate() error {
	if !e.Type.Valid() {
		return Errorf(EINVALID, "unknown event type %q", Truncate(string(e.Type), 40))
	}
	if e.UserID != "" {
		if err := ValidateUserID(e.UserID); err != nil {
			return err
		}
	}
	if err := ValidateProviderID(e.ProviderID); err != nil {
		return err
	}
	if len(e.ID) > 64 {
		return Errorf(EINVALID, "event id is longer than 64 bytes")
	}
	return nil
}

var eventIDEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// NewEventID returns a fresh random event id, "msg_" and 26 characters
// (128 bits), in the style of the Standard Webhooks examples.
func NewEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return "msg_" + eventIDEncoding.EncodeToString(b[:])
}

// DeliveryStatus is the state of a [Delivery].
type DeliveryStatus string

// Delivery states.
const (
	// DeliveryPending: to be (re)sent when due.
	DeliveryPending DeliveryStatus = "pending"
	// DeliveryDead: given up (retry window over, or the receiver answered
	// 410 Gone); kept as a dead letter for an operator to see.
	DeliveryDead DeliveryStatus = "dead"
)

// Delivery is one event on its way to one webhook endpoint: a row of the
// outbox. An event written by a state change first has an empty Endpoint
// (not yet routed); the dispatcher that claims it replaces it by one
// delivery per endpoint that wants it ([OutboxStore.RouteDelivery]).
type Delivery struct {
	ID       int64 // the outbox row
	Event    Event
	Endpoint string // the endpoint's id; "" until routed
	Status   DeliveryStatus
	// Attempts counts the claims of this row; with LeaseOwner it fences the
	// holder's later writes.
	Attempts      int
	NextAttemptAt time.Time
	LeaseOwner    string
	LeaseUntil    time.Time
	// LastStatus is the receiver's last HTTP status (0: no answer) and
	// LastError what went wrong, without secrets.
	LastStatus int
	LastError  string
	// CreatedAt is when the event entered the outbox (database clock): the
	// start of its retry window. Routed copies keep the original's.
	CreatedAt time.Time
	DeadAt    time.Time // zero unless Status is dead
}

// OutboxStats are the gauges of the outbox.
type OutboxStats struct {
	Pending int64 // deliveries still to make, routed or not
	Dead    int64 // dead letters
	// OldestPending is the creation time of the oldest pending delivery;
	// zero when none is pending.
	OldestPending time.Time
}

// DeadLetterFilter selects dead letters, newest first.
type DeadLetterFilter struct {
	Endpoint string // "": every endpoint
	BeforeID int64  // pages backwards
	Limit    int    // 0: a default of 100; at most 1000 (see [PageLimit])
}

// OutboxStore keeps the webhook outbox: events written with the state
// changes that caused them and delivered at least once by exactly one
// replica at a time. Claims are leases judged on the database clock, like
// the links' refresh lease; every write of a claimed row is fenced by
// (LeaseOwner, Attempts), so a holder whose lease was taken over writes
// nothing.
type OutboxStore interface {
	// EnqueueEvents writes events to the outbox in one transaction, for
	// events that have no row of their own to change with (provider-level
	// events). State changes of links write their events themselves, in
	// their own transaction.
	EnqueueEvents(ctx context.Context, events []Event) error
	// ClaimDeliveries leases up to limit due pending deliveries (next
	// attempt at or before now(), no live lease) to owner until now()+ttl,
	// bumping each one's Attempts, oldest due first. Concurrent claimers
	// never get the same row.
	ClaimDeliveries(ctx context.Context, owner string, ttl time.Duration, limit int) ([]*Delivery, error)
	// RouteDelivery replaces the claimed unrouted delivery d by one
	// pending delivery per endpoint (same event, same CreatedAt, due now,
	// not leased, no attempt yet), in one transaction, and returns them.
	// No endpoints: d is simply removed. It returns nil, nil if d's lease
	// was lost.
	RouteDelivery(ctx context.Context, d *Delivery, endpoints []string) ([]*Delivery, error)
	// CompleteDelivery removes the delivered d. Reports whether d's holder
	// still held it.
	CompleteDelivery(ctx context.Context, d *Delivery) (bool, error)
	// RetryDelivery releases d and makes it due again after delay,
	// recording the receiver's answer. Reports whether it held d.
	RetryDelivery(ctx context.Context, d *Delivery, delay time.Duration, status int, lastErr string) (bool, error)
	// KillDelivery makes d a dead letter, recording why. Reports whether it
	// held d.
	KillDelivery(ctx context.Context, d *Delivery, status int, lastErr string) (bool, error)
	// RetryDeadLetter makes the dead letter id pending again, due now,
	// with a fresh retry window (CreatedAt set to now()) and its attempts
	// reset, and returns it; [ENOTFOUND] if there is no such dead letter.
	RetryDeadLetter(ctx context.Context, id int64) (*Delivery, error)
	// ListDeadLetters returns dead letters matching f, newest first.
	ListDeadLetters(ctx context.Context, f DeadLetterFilter) ([]*Delivery, error)
	// OutboxStats counts pending deliveries and dead letters (indexed).
	OutboxStats(ctx context.Context) (OutboxStats, error)
}
