// Package audit writes the audit trail in batches, so that recording an
// event never makes a request wait for the database, and keeps it from
// growing without bound.
//
// [Batcher] implements [tokenbroker.Auditor]. Record hands the event to a
// bounded channel without blocking: when the channel is full the event is
// dropped, counted ([Batcher.Dropped]) and reported in one log line per
// flush interval, because the token endpoint (the hot path) must never wait
// for the audit trail. One background goroutine collects events and writes
// them with [tokenbroker.AuditStore.AppendAudit] in batches of at most
// MaxBatch rows, whenever a batch is full and at least once per
// FlushInterval.
//
// Token reads ([tokenbroker.AuditTokenRead], one per token handed out) are
// not rows of their own: Record counts each into the row of its flush
// interval and (actor, user, provider, outcome, detail), which the writer
// takes at the end of the interval and writes with its Count, FirstAt and
// Time (the last read). The volume of the trail then grows with the number
// of distinct callers and links read per interval, not with the request
// rate, and an investigation still sees who read which token, how often,
// and when, to the interval (one second by default). Counting is one map
// update under a mutex that the writer holds only to swap the map, so a
// read is counted in exactly one interval: none is lost or counted twice
// across a flush. Lifecycle events (link created, refreshed, broken, ...)
// are written by the stores with the change itself, one row each, and
// events recorded here other than token reads stay one row each too.
//
// A batch the store refuses is kept and retried with the next one, up to
// Buffer rows; beyond that the oldest pending rows are dropped and their
// events counted, so a database outage costs memory bounded by Buffer and
// never blocks a caller.
//
// What a crash can lose: the events recorded but not yet written, that is
// at most FlushInterval worth of events (bounded by Buffer pending in the
// channel, Buffer aggregated rows, plus up to Buffer awaiting a retry after
// a failed write). A clean shutdown calls [Batcher.Close], which writes
// everything still buffered. Events recorded after Close are dropped and
// counted.
//
// [Pruner] enforces the retention: in the background, on one replica at a
// time (elected by a [tokenbroker.JobLeaseStore] lease on the database
// clock), it deletes the rows older than the retention in small batches
// through the index on time.
package audit
