package webhook

import (
	"encoding/json"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// Payload is the JSON body of every webhook request, in the shape the
// Standard Webhooks specification recommends: the event type, when it
// happened, and its data. It never holds a token. The event's id is the
// webhook-id header, the same on every retry.
type Payload struct {
	Type      tokenbroker.EventType `json:"type"`
	Timestamp time.Time             `json:"timestamp"`
	Data      PayloadData           `json:"data"`
}

// PayloadData is the event's subject and cause.
type PayloadData struct {
	EventID    string `json:"event_id"`
	UserID     string `json:"user_id,omitempty"`
	ProviderID string `json:"provider_id"`
	Reason     string `json:"reason,omitempty"`
	Detail     string `json:"detail,omitempty"`
}

// Body returns the request body of event e; every attempt sends the same
// bytes.
func Body(e tokenbroker.Event) []byte {
	b, _ := json.Marshal(Payload{ // plain strings and a time: Marshal cannot fail
		Type:      e.Type,
		Timestamp: e.Time.UTC(),
		Data: PayloadData{
			EventID: e.ID, UserID: e.UserID, ProviderID: e.ProviderID,
			Reason: e.Reason, Detail: e.Detail,
		},
	})
	return b
}
