-- The webhook outbox: lifecycle events written in the transaction of the
-- state change that caused them, then delivered by package webhook. A row
-- with endpoint '' is an event not yet routed to its endpoints; routing
-- replaces it by one row per endpoint. Delivered rows are deleted; rows
-- given up on stay as dead letters.

-- +goose Up
CREATE TABLE webhook_outbox (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        text        NOT NULL,
    type            text        NOT NULL,
    event_time      timestamptz NOT NULL DEFAULT now(),
    user_id         text        NOT NULL DEFAULT '',
    provider_id     text        NOT NULL DEFAULT '',
    reason          text        NOT NULL DEFAULT '',
    detail          text        NOT NULL DEFAULT '',
    endpoint        text        NOT NULL DEFAULT '',
    status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_owner     text,
    lease_until     timestamptz,
    last_status     integer     NOT NULL DEFAULT 0,
    last_error      text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    dead_at         timestamptz,
    UNIQUE (event_id, endpoint)
);
-- ClaimDeliveries and OutboxStats: pending rows by due time.
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at, id) WHERE status = 'pending';
-- ListDeadLetters and OutboxStats: dead letters, newest first.
CREATE INDEX webhook_outbox_dead ON webhook_outbox (id) WHERE status = 'dead';

-- +goose Down
DROP TABLE webhook_outbox;
