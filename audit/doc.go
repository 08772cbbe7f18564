// Package audit writes the audit trail in batches, so that recording an
// event never makes a request wait for the database.
//
// [Batcher] implements [tokenbroker.Auditor]. Record hands the event to a
// bounded channel without blocking: when the channel is full the event is
// dropped, counted ([Batcher.Dropped]) and reported in one log line per
// flush interval, because the token endpoint (the hot path) must never wait
// for the audit trail. One background goroutine collects events and writes
// them with [tokenbroker.AuditStore.AppendAudit] in batches of at most
// MaxBatch events, whenever a batch is full and at least once per
// FlushInterval.
//
// A batch the store refuses is kept and retried with the next one, up to
// Buffer events; beyond that the oldest pending events are dropped and
// counted, so a database outage costs memory bounded by Buffer and never
// blocks a caller.
//
// What a crash can lose: the events recorded but not yet written, that is
// at most FlushInterval worth of events (bounded by Buffer pending in the
// channel plus up to Buffer awaiting a retry after a failed write). A clean
// shutdown calls [Batcher.Close], which writes everything still buffered.
// Events recorded after Close are dropped and counted.
package audit
