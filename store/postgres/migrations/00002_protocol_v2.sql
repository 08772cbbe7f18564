-- Refresh protocol v2 (docs/design.md): a fenced, renewed lease; durable
-- attempt accounting per generation; the link's backoff shared by every
-- replica; typed reauth reasons; provider health shared by every replica.

-- +goose Up
ALTER TABLE links ADD COLUMN reauth_reason text NOT NULL DEFAULT '';
-- lease_epoch grows with every acquisition and is never reset: the fence.
ALTER TABLE links ADD COLUMN lease_epoch bigint NOT NULL DEFAULT 0;
-- When an acquisition first found the lease expired without a release;
-- the grace before a takeover counts from it.
ALTER TABLE links ADD COLUMN lease_expired_seen_at timestamptz;
-- Per generation: lease acquisitions, and why its refresh token may
-- already have been processed ('', 'holder_died', 'answer_lost').
ALTER TABLE links ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE links ADD COLUMN suspect text NOT NULL DEFAULT '';
-- Consecutive failed attempts since the last success, and the backoff.
ALTER TABLE links ADD COLUMN failures integer NOT NULL DEFAULT 0;
ALTER TABLE links ADD COLUMN failing_since timestamptz;
ALTER TABLE links ADD COLUMN last_error text NOT NULL DEFAULT '';
ALTER TABLE links ADD COLUMN next_attempt_at timestamptz;
-- When the token set was obtained, on the clock that computed its expiry:
-- expiry - issued_at is the access token's lifetime.
ALTER TABLE links ADD COLUMN issued_at timestamptz;
UPDATE links SET reauth_reason = CASE WHEN failure_reason LIKE 'lost refresh%' THEN 'lost_refresh' ELSE 'revoked' END
WHERE state = 'reauth_required';
UPDATE links SET issued_at = COALESCE(refreshed_at, updated_at);
-- A reconnect now sets refreshed_at; give existing links their best guess.
UPDATE links SET refreshed_at = updated_at WHERE refreshed_at IS NULL;

CREATE TABLE provider_health (
    provider_id         text        PRIMARY KEY,
    failures            integer     NOT NULL DEFAULT 0,
    opens               integer     NOT NULL DEFAULT 0,
    open_until          timestamptz,
    probe_owner         text,
    probe_until         timestamptz,
    misconfigured       text        NOT NULL DEFAULT '',
    misconfigured_since timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE provider_health;
ALTER TABLE links DROP COLUMN issued_at, DROP COLUMN next_attempt_at, DROP COLUMN last_error, DROP COLUMN failing_since,
    DROP COLUMN failures, DROP COLUMN suspect, DROP COLUMN attempts,
    DROP COLUMN lease_expired_seen_at, DROP COLUMN lease_epoch, DROP COLUMN reauth_reason;
