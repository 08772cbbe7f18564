-- The audit trail at scale: token reads are aggregated, one row per flush
-- interval and (actor, user, provider, outcome, detail), counting the reads
-- between first_at and time (the last one); old rows are pruned in
-- batches through audit_events_time by one replica at a time, which a job
-- lease (judged on the database clock) elects. Times are unix milliseconds.

-- +goose Up
-- How many events the row stands for (1 for every lifecycle event).
ALTER TABLE audit_events ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
-- The first event an aggregated row counts; NULL when it is time itself.
ALTER TABLE audit_events ADD COLUMN first_at INTEGER;

CREATE TABLE job_leases (
    job         TEXT    PRIMARY KEY,
    owner       TEXT    NOT NULL,
    lease_until INTEGER NOT NULL
) WITHOUT ROWID;

-- +goose Down
DROP TABLE job_leases;
ALTER TABLE audit_events DROP COLUMN first_at;
ALTER TABLE audit_events DROP COLUMN count;
