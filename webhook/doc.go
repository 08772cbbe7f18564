// Package webhook tells a platform about lifecycle events (the
// [tokenbroker.EventType]s: a link needs re-authentication, recovered, was
// deleted, a provider is misconfigured, ...) by POSTing them, signed as the
// Standard Webhooks specification says, to the endpoints of the
// configuration file's webhooks: section ([Config], docs/webhooks.md).
//
// # The outbox
//
// Events do not go from memory to the network. A state change writes its
// events to the outbox table in its own database transaction (the stores'
// insertEvents; [tokenbroker.OutboxStore.EnqueueEvents] for events with no
// row of their own), so a replica killed a moment later cannot lose them.
// A [Dispatcher] runs on every replica and empties the outbox:
//
//   - it claims due rows with a lease judged on the database clock (one
//     statement; FOR UPDATE SKIP LOCKED on PostgreSQL), so exactly one
//     replica sends a row at a time, and a dead replica's claims return
//     to the others when their lease ends;
//   - an event's first row is routed: replaced, in one transaction, by one
//     row per endpoint whose events filter wants it, each with its own
//     retries;
//   - a routed row is sent once per claim; 2xx deletes it, 410 makes it a
//     dead letter at once, anything else reschedules it with exponential
//     backoff and jitter until the retry window (24 h) is over, and then
//     it is a dead letter too, kept for the API to list and re-send;
//   - every write of a claimed row is fenced by (lease owner, attempts), so
//     a holder whose lease was taken over writes nothing.
//
// Delivery is therefore at least once: a replica that dies after the
// receiver answered and before it recorded the answer leaves the row to be
// sent again, with the same webhook-id and body, which receivers use to
// drop the repeat.
//
// # Isolation from the token path
//
// The dispatcher shares nothing with token requests but the database: it
// runs in its own goroutines, at most Options.Concurrency attempts at once,
// each bounded by Options.Timeout, and it reads the outbox every
// PollInterval. A slow or failing receiver holds a worker, never a token
// request.
//
// # Signatures
//
// [Sign] makes the webhook-signature header: "v1," and the base64
// HMAC-SHA256 of "id.timestamp.body" for each of the endpoint's secrets
// ("whsec_" and base64), separated by spaces during a rotation. [Verify]
// is the receiver's side; docs/examples/webhook-receiver is a complete
// receiver in plain Go.
package webhook
