// Package signal is the in-process fan-out of a link's "changed" signal,
// shared by the store implementations. [Hub] implements
// tokenbroker.Signaler: store/sqlite signals it directly after each
// successful write; store/postgres signals it from its LISTEN connection
// (and after its own writes).
//
// Channels have capacity one and sends never block, so signals coalesce: a
// waiter that has not yet drained its channel sees one pending signal for
// any number of changes. That is enough because a signal only says "re-read
// the link" (docs/design.md step 4, I5: waiters re-read and keep a poll fallback).
package signal
