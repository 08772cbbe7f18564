-- The admin console: indexes for its paginated, filtered link lists (each
-- ordered by user_id, provider_id, so every page is a range read), its
-- audit filter by actor, its sessions (shared by every replica) and the
-- last use of each API key.

-- +goose Up
-- Every console list is ordered by (user_id, provider_id) in the "C"
-- collation (bytes), whatever the database's default collation, so that a
-- user id prefix is one index range and keyset pages are exact.
CREATE INDEX links_console_user ON links (user_id COLLATE "C", provider_id COLLATE "C");
-- Lists filtered by provider.
CREATE INDEX links_provider_user ON links (provider_id COLLATE "C", user_id COLLATE "C");
-- Lists filtered by provider and state.
CREATE INDEX links_provider_state_user ON links (provider_id COLLATE "C", state, user_id COLLATE "C");
-- Lists filtered by state; counts by state and provider.
CREATE INDEX links_state_user ON links (state, user_id COLLATE "C", provider_id COLLATE "C");
-- Lists filtered by failure reason code (tokenbroker.ReasonCode); the
-- expression must stay identical to reasonCodeSQL in console.go.
CREATE INDEX links_reason_user ON links ((rtrim(split_part(failure_reason, ':', 1), ' ')),
    user_id COLLATE "C", provider_id COLLATE "C") WHERE failure_reason <> '';
-- Search by account login.
CREATE INDEX links_account_login ON links (account_login COLLATE "C", user_id COLLATE "C", provider_id COLLATE "C");

-- The audit log filtered by actor, newest first.
CREATE INDEX audit_events_actor ON audit_events (actor, id);

-- Console sessions are keyed by the SHA-256 (hex) of their random id.
CREATE TABLE admin_sessions (
    id_hash    text        PRIMARY KEY,
    key_id     bigint      NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    idle_until timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX admin_sessions_expires_at ON admin_sessions (expires_at);
CREATE INDEX admin_sessions_key_id ON admin_sessions (key_id);

-- Last use of each API key, written at most about once a minute per key.
CREATE TABLE api_key_usage (
    key_id       bigint      PRIMARY KEY REFERENCES api_keys (id) ON DELETE CASCADE,
    last_used_at timestamptz NOT NULL
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
DROP INDEX links_console_user;
