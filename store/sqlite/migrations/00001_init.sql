-- tokenbroker schema, SQLite dialect. Times are INTEGER unix milliseconds
-- (UTC) so that leases and expiries compare with the database clock,
-- CAST(unixepoch('subsec') * 1000 AS INTEGER), inside the statement.

-- +goose Up
CREATE TABLE links (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id        TEXT    NOT NULL,
    provider_id    TEXT    NOT NULL,
    account_id     TEXT    NOT NULL DEFAULT '',
    account_login  TEXT    NOT NULL DEFAULT '',
    access_token   TEXT    NOT NULL DEFAULT '',
    token_type     TEXT    NOT NULL DEFAULT '',
    refresh_token  TEXT    NOT NULL DEFAULT '',
    id_token       TEXT    NOT NULL DEFAULT '',
    expiry         INTEGER,                       -- NULL: the access token does not expire
    scopes         TEXT    NOT NULL DEFAULT '[]', -- JSON array of strings
    extra          TEXT    NOT NULL DEFAULT '{}', -- JSON object of strings
    key_id         TEXT    NOT NULL DEFAULT '',
    generation     INTEGER NOT NULL DEFAULT 1,
    state          TEXT    NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'reauth_required')),
    failure_reason TEXT    NOT NULL DEFAULT '',
    lease_owner    TEXT,
    lease_until    INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    refreshed_at   INTEGER,
    UNIQUE (user_id, provider_id)
);
-- ListLinksExpiringBefore: active links by expiry.
CREATE INDEX links_active_expiry ON links (expiry) WHERE state = 'active' AND expiry IS NOT NULL;
-- Rekey progress (CountSealedByKey, ListLinksNotSealedBy).
CREATE INDEX links_key_id ON links (key_id);

CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    prefix      TEXT    NOT NULL UNIQUE,
    secret_hash BLOB    NOT NULL,
    name        TEXT    NOT NULL DEFAULT '',
    scopes      TEXT    NOT NULL DEFAULT '[]',
    users       TEXT    NOT NULL DEFAULT '[]',
    providers   TEXT    NOT NULL DEFAULT '[]',
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

-- Connect sessions and auth requests are keyed by the SHA-256 (hex) of
-- their random id: a read of the database does not yield usable ids.
CREATE TABLE connect_sessions (
    id_hash    TEXT    PRIMARY KEY,
    user_id    TEXT    NOT NULL,
    providers  TEXT    NOT NULL DEFAULT '[]',
    return_url TEXT    NOT NULL DEFAULT '',
    created_by TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    claimed_at INTEGER
) WITHOUT ROWID;
CREATE INDEX connect_sessions_expires_at ON connect_sessions (expires_at);

CREATE TABLE auth_requests (
    id_hash      TEXT    PRIMARY KEY,
    kind         TEXT    NOT NULL CHECK (kind IN ('code', 'device')),
    session_id   TEXT    NOT NULL DEFAULT '',
    user_id      TEXT    NOT NULL,
    provider_id  TEXT    NOT NULL,
    secret       TEXT    NOT NULL DEFAULT '',
    key_id       TEXT    NOT NULL DEFAULT '',
    redirect_uri TEXT    NOT NULL DEFAULT '',
    user_code    TEXT    NOT NULL DEFAULT '',
    verify_uri   TEXT    NOT NULL DEFAULT '',
    interval_ms  INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX auth_requests_expires_at ON auth_requests (expires_at);
CREATE INDEX auth_requests_key_id ON auth_requests (key_id);

CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    time        INTEGER NOT NULL,
    actor       TEXT    NOT NULL DEFAULT '',
    action      TEXT    NOT NULL,
    user_id     TEXT    NOT NULL DEFAULT '',
    provider_id TEXT    NOT NULL DEFAULT '',
    outcome     TEXT    NOT NULL DEFAULT '',
    detail      TEXT    NOT NULL DEFAULT ''
);
-- ListAudit filters, newest (highest id) first.
CREATE INDEX audit_events_user_id     ON audit_events (user_id, id);
CREATE INDEX audit_events_provider_id ON audit_events (provider_id, id);
CREATE INDEX audit_events_action      ON audit_events (action, id);
CREATE INDEX audit_events_time        ON audit_events (time);

-- +goose Down
DROP TABLE audit_events;
DROP TABLE auth_requests;
DROP TABLE connect_sessions;
DROP TABLE api_keys;
DROP TABLE links;
