-- tokenbroker schema, PostgreSQL dialect. Leases and expiries are compared
-- with now(), the database clock, inside each statement.

-- +goose Up
CREATE TABLE links (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id        text        NOT NULL,
    provider_id    text        NOT NULL,
    account_id     text        NOT NULL DEFAULT '',
    account_login  text        NOT NULL DEFAULT '',
    access_token   text        NOT NULL DEFAULT '',
    token_type     text        NOT NULL DEFAULT '',
    refresh_token  text        NOT NULL DEFAULT '',
    id_token       text        NOT NULL DEFAULT '',
    expiry         timestamptz,                      -- NULL: the access token does not expire
    scopes         text[]      NOT NULL DEFAULT '{}',
    extra          jsonb       NOT NULL DEFAULT '{}',
    key_id         text        NOT NULL DEFAULT '',
    generation     bigint      NOT NULL DEFAULT 1,
    state          text        NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'reauth_required')),
    failure_reason text        NOT NULL DEFAULT '',
    lease_owner    text,
    lease_until    timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    refreshed_at   timestamptz,
    UNIQUE (user_id, provider_id)
);
-- ListLinksExpiringBefore: active links by expiry.
CREATE INDEX links_active_expiry ON links (expiry) WHERE state = 'active' AND expiry IS NOT NULL;
-- Rekey progress (CountSealedByKey, ListLinksNotSealedBy).
CREATE INDEX links_key_id ON links (key_id);

CREATE TABLE api_keys (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    prefix      text        NOT NULL UNIQUE,
    secret_hash bytea       NOT NULL,
    name        text        NOT NULL DEFAULT '',
    scopes      text[]      NOT NULL DEFAULT '{}',
    users       text[]      NOT NULL DEFAULT '{}',
    providers   text[]      NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- Connect sessions and auth requests are keyed by the SHA-256 (hex) of
-- their random id: a read of the database does not yield usable ids.
CREATE TABLE connect_sessions (
    id_hash    text        PRIMARY KEY,
    user_id    text        NOT NULL,
    providers  text[]      NOT NULL DEFAULT '{}',
    return_url text        NOT NULL DEFAULT '',
    created_by text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    claimed_at timestamptz
);
CREATE INDEX connect_sessions_expires_at ON connect_sessions (expires_at);

CREATE TABLE auth_requests (
    id_hash      text        PRIMARY KEY,
    kind         text        NOT NULL CHECK (kind IN ('code', 'device')),
    session_id   text        NOT NULL DEFAULT '',
    user_id      text        NOT NULL,
    provider_id  text        NOT NULL,
    secret       text        NOT NULL DEFAULT '',
    key_id       text        NOT NULL DEFAULT '',
    redirect_uri text        NOT NULL DEFAULT '',
    user_code    text        NOT NULL DEFAULT '',
    verify_uri   text        NOT NULL DEFAULT '',
    interval_ms  bigint      NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX auth_requests_expires_at ON auth_requests (expires_at);
CREATE INDEX auth_requests_key_id ON auth_requests (key_id);

CREATE TABLE audit_events (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time        timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL DEFAULT '',
    action      text        NOT NULL,
    user_id     text        NOT NULL DEFAULT '',
    provider_id text        NOT NULL DEFAULT '',
    outcome     text        NOT NULL DEFAULT '',
    detail      text        NOT NULL DEFAULT ''
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
