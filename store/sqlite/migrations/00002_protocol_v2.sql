-- Refresh protocol v2 (docs/design.md): a fenced, renewed lease; durable
-- attempt accounting per generation; the link's backoff shared by every
-- replica; typed reauth reasons; provider health shared by every replica.

-- +goose Up
ALTER TABLE links ADD COLUMN reauth_reason TEXT NOT NULL DEFAULT '';
-- lease_epoch grows with every acquisition and is never reset: the fence.
ALTER TABLE links ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
-- When an acquisition first found the lease expired without a release;
-- the grace before a takeover counts from it.
ALTER TABLE links ADD COLUMN lease_expired_seen_at INTEGER;
-- Per generation: lease acquisitions, and why its refresh token may
-- already have been processed ('', 'holder_died', 'answer_lost').
ALTER TABLE links ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE links ADD COLUMN suspect TEXT NOT NULL DEFAULT '';
-- Consecutive failed attempts since the last success, and the backoff.
ALTER TABLE links ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE links ADD COLUMN failing_since INTEGER;
ALTER TABLE links ADD COLUMN last_error TEXT NOT NULL DEFAULT '';
ALTER TABLE links ADD COLUMN next_attempt_at INTEGER;
-- When the token set was obtained, on the clock that computed its expiry:
-- expiry - issued_at is the access token's lifetime.
ALTER TABLE links ADD COLUMN issued_at INTEGER;
UPDATE links SET reauth_reason = CASE WHEN failure_reason LIKE 'lost refresh%' THEN 'lost_refresh' ELSE 'revoked' END
WHERE state = 'reauth_required';
UPDATE links SET issued_at = COALESCE(refreshed_at, updated_at);
-- A reconnect now sets refreshed_at; give existing links their best guess.
UPDATE links SET refreshed_at = updated_at WHERE refreshed_at IS NULL;

CREATE TABLE provider_health (
    provider_id         TEXT    PRIMARY KEY,
    failures            INTEGER NOT NULL DEFAULT 0,
    opens               INTEGER NOT NULL DEFAULT 0,
    open_until          INTEGER,
    probe_owner         TEXT,
    probe_until         INTEGER,
    misconfigured       TEXT    NOT NULL DEFAULT '',
    misconfigured_since INTEGER,
    updated_at          INTEGER NOT NULL
);

-- +goose Down
DROP TABLE provider_health;
ALTER TABLE links DROP COLUMN issued_at;
ALTER TABLE links DROP COLUMN next_attempt_at;
ALTER TABLE links DROP COLUMN last_error;
ALTER TABLE links DROP COLUMN failing_since;
ALTER TABLE links DROP COLUMN failures;
ALTER TABLE links DROP COLUMN suspect;
ALTER TABLE links DROP COLUMN attempts;
ALTER TABLE links DROP COLUMN lease_expired_seen_at;
ALTER TABLE links DROP COLUMN lease_epoch;
ALTER TABLE links DROP COLUMN reauth_reason;
