-- The admin console: indexes for its paginated, filtered link lists (each
-- ordered by user_id, provider_id, so every page is a range read), its
-- audit filter by actor, its sessions (shared by every process on the
-- database) and the last use of each API key.

-- +goose Up
-- Lists filtered by provider.
CREATE INDEX links_provider_user ON links (provider_id, user_id);
-- Lists filtered by provider and state.
CREATE INDEX links_provider_state_user ON links (provider_id, state, user_id);
-- Lists filtered by state; counts by state and provider.
CREATE INDEX links_state_user ON links (state, user_id, provider_id);
-- Lists filtered by failure reason code (tokenbroker.ReasonCode); the
-- expression must stay identical to reasonCodeSQL in console.go.
CREATE INDEX links_reason_user ON links (
    (rtrim(CASE WHEN instr(failure_reason, ':') > 0 THEN substr(failure_reason, 1, instr(failure_reason, ':') - 1) ELSE failure_reason END, ' ')),
    user_id, provider_id) WHERE failure_reason <> '';
-- Search by account login.
CREATE INDEX links_account_login ON links (account_login, user_id, provider_id);

-- The audit log filtered by actor, newest first.
CREATE INDEX audit_events_actor ON audit_events (actor, id);

-- Console sessions are keyed by the SHA-256 (hex) of their random id.
CREATE TABLE admin_sessions (
    id_hash    TEXT    PRIMARY KEY,
    key_id     INTEGER NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    idle_until INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX admin_sessions_expires_at ON admin_sessions (expires_at);
CREATE INDEX admin_sessions_key_id ON admin_sessions (key_id);

-- Last use of each API key, written at most about once a minute per key.
CREATE TABLE api_key_usage (
    key_id       INTEGER PRIMARY KEY REFERENCES api_keys (id) ON DELETE CASCADE,
    last_used_at INTEGER NOT NULL
);

-- +goose Down
DROP TABLE api_key_usage;
DROP TABLE admin_sessions;
DROP INDEX audit_events_actor;
DROP INDEX links_account_login;
DROP INDEX links_reason_user;
DROP INDEX links_state_user;
DROP INDEX links_provider_state_user;
DROP INDEX links_provider_user;
