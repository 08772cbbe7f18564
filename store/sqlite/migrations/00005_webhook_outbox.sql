-- The webhook outbox: lifecycle events written in the transaction of the
-- state change that caused them, then delivered by package webhook. A row
-- with endpoint '' is an event not yet routed to its endpoints; routing
-- replaces it by one row per endpoint. Delivered rows are deleted; rows
-- given up on stay as dead letters. Times are unix milliseconds.

-- +goose Up
CREATE TABLE webhook_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    event_time      INTEGER NOT NULL,
    user_id         TEXT    NOT NULL DEFAULT '',
    provider_id     TEXT    NOT NULL DEFAULT '',
    reason          TEXT    NOT NULL DEFAULT '',
    detail          TEXT    NOT NULL DEFAULT '',
    endpoint        TEXT    NOT NULL DEFAULT '',
    status          TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_status     INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    dead_at         INTEGER,
    UNIQUE (event_id, endpoint)
);
-- ClaimDeliveries and OutboxStats: pending rows by due time.
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at, id) WHERE status = 'pending';
-- ListDeadLetters and OutboxStats: dead letters, newest first.
CREATE INDEX webhook_outbox_dead ON webhook_outbox (id) WHERE status = 'dead';

-- +goose Down
DROP TABLE webhook_outbox;
