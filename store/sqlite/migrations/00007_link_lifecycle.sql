-- Link lifecycle: the states degraded and idle, the last use of each link,
-- the indexes of the background refresher and the keep-alive, and the
-- number of links per provider and state kept by triggers (the
-- tokenbroker_links gauge reads it). Times are unix milliseconds.
--
-- SQLite cannot change a CHECK constraint in place, so links is rebuilt:
-- copied into a new table with the new constraint, its AUTOINCREMENT
-- sequence carried over (a deleted link's id is never reused), and its
-- indexes created again. No table references links.

-- +goose Up
CREATE TABLE links_new (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id               TEXT    NOT NULL,
    provider_id           TEXT    NOT NULL,
    account_id            TEXT    NOT NULL DEFAULT '',
    account_login         TEXT    NOT NULL DEFAULT '',
    access_token          TEXT    NOT NULL DEFAULT '',
    token_type            TEXT    NOT NULL DEFAULT '',
    refresh_token         TEXT    NOT NULL DEFAULT '',
    id_token              TEXT    NOT NULL DEFAULT '',
    expiry                INTEGER,                       -- NULL: the access token does not expire
    scopes                TEXT    NOT NULL DEFAULT '[]', -- JSON array of strings
    extra                 TEXT    NOT NULL DEFAULT '{}', -- JSON object of strings
    key_id                TEXT    NOT NULL DEFAULT '',
    generation            INTEGER NOT NULL DEFAULT 1,
    state                 TEXT    NOT NULL DEFAULT 'active'
                          CHECK (state IN ('active', 'degraded', 'idle', 'reauth_required')),
    failure_reason        TEXT    NOT NULL DEFAULT '',
    lease_owner           TEXT,
    lease_until           INTEGER,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    refreshed_at          INTEGER,
    reauth_reason         TEXT    NOT NULL DEFAULT '',
    lease_epoch           INTEGER NOT NULL DEFAULT 0,
    lease_expired_seen_at INTEGER,
    attempts              INTEGER NOT NULL DEFAULT 0,
    suspect               TEXT    NOT NULL DEFAULT '',
    failures              INTEGER NOT NULL DEFAULT 0,
    failing_since         INTEGER,
    last_error            TEXT    NOT NULL DEFAULT '',
    next_attempt_at       INTEGER,
    issued_at             INTEGER,
    -- When a token of the link was last asked for (or it was connected),
    -- written at most about once per interval per link.
    last_used_at          INTEGER,
    UNIQUE (user_id, provider_id)
);
-- Links that existed before their use was recorded count as used now, so
-- an upgrade leaves none idle at once.
INSERT INTO links_new (id, user_id, provider_id, account_id, account_login, access_token, token_type,
    refresh_token, id_token, expiry, scopes, extra, key_id, generation, state, failure_reason,
    lease_owner, lease_until, created_at, updated_at, refreshed_at, reauth_reason, lease_epoch,
    lease_expired_seen_at, attempts, suspect, failures, failing_since, last_error, next_attempt_at,
    issued_at, last_used_at)
SELECT id, user_id, provider_id, account_id, account_login, access_token, token_type,
    refresh_token, id_token, expiry, scopes, extra, key_id, generation, state, failure_reason,
    lease_owner, lease_until, created_at, updated_at, refreshed_at, reauth_reason, lease_epoch,
    lease_expired_seen_at, attempts, suspect, failures, failing_since, last_error, next_attempt_at,
    issued_at, CAST(unixepoch('subsec') * 1000 AS INTEGER)
FROM links;
INSERT INTO sqlite_sequence (name, seq)
SELECT 'links_new', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'links_new');
UPDATE sqlite_sequence SET seq = max(seq, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'links'), 0))
WHERE name = 'links_new';
DROP TABLE links;
ALTER TABLE links_new RENAME TO links;

CREATE INDEX links_key_id ON links (key_id);
CREATE INDEX links_provider_user ON links (provider_id, user_id);
CREATE INDEX links_provider_state_user ON links (provider_id, state, user_id);
CREATE INDEX links_state_user ON links (state, user_id, provider_id);
CREATE INDEX links_reason_user ON links (
    (rtrim(CASE WHEN instr(failure_reason, ':') > 0 THEN substr(failure_reason, 1, instr(failure_reason, ':') - 1) ELSE failure_reason END, ' ')),
    user_id, provider_id) WHERE failure_reason <> '';
CREATE INDEX links_account_login ON links (account_login, user_id, provider_id);
-- ListLinksExpiringBefore: the links the background refresher keeps fresh,
-- by expiry.
CREATE INDEX links_refresh_expiry ON links (expiry) WHERE state IN ('active', 'degraded') AND expiry IS NOT NULL;
-- ListStaleLinks: a provider's links in a state by the age of their tokens.
CREATE INDEX links_provider_state_refreshed ON links (provider_id, state, refreshed_at);

-- Links per provider and state, kept by the triggers below in the
-- transaction of every write that adds, removes or moves a link.
CREATE TABLE link_state_counts (
    provider_id TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    n           INTEGER NOT NULL,
    PRIMARY KEY (provider_id, state)
) WITHOUT ROWID;
INSERT INTO link_state_counts (provider_id, state, n)
SELECT provider_id, state, count(*) FROM links GROUP BY provider_id, state;

-- +goose StatementBegin
CREATE TRIGGER links_count_insert AFTER INSERT ON links BEGIN
    INSERT INTO link_state_counts (provider_id, state, n) VALUES (NEW.provider_id, NEW.state, 1)
    ON CONFLICT (provider_id, state) DO UPDATE SET n = n + 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER links_count_delete AFTER DELETE ON links BEGIN
    UPDATE link_state_counts SET n = n - 1 WHERE provider_id = OLD.provider_id AND state = OLD.state;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER links_count_state AFTER UPDATE OF state ON links WHEN OLD.state <> NEW.state BEGIN
    UPDATE link_state_counts SET n = n - 1 WHERE provider_id = OLD.provider_id AND state = OLD.state;
    INSERT INTO link_state_counts (provider_id, state, n) VALUES (NEW.provider_id, NEW.state, 1)
    ON CONFLICT (provider_id, state) DO UPDATE SET n = n + 1;
END;
-- +goose StatementEnd

-- +goose Down
DROP TABLE link_state_counts;
CREATE TABLE links_old (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id        TEXT    NOT NULL,
    provider_id    TEXT    NOT NULL,
    account_id     TEXT    NOT NULL DEFAULT '',
    account_login  TEXT    NOT NULL DEFAULT '',
    access_token   TEXT    NOT NULL DEFAULT '',
    token_type     TEXT    NOT NULL DEFAULT '',
    refresh_token  TEXT    NOT NULL DEFAULT '',
    id_token       TEXT    NOT NULL DEFAULT '',
    expiry         INTEGER,
    scopes         TEXT    NOT NULL DEFAULT '[]',
    extra          TEXT    NOT NULL DEFAULT '{}',
    key_id         TEXT    NOT NULL DEFAULT '',
    generation     INTEGER NOT NULL DEFAULT 1,
    state          TEXT    NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'reauth_required')),
    failure_reason TEXT    NOT NULL DEFAULT '',
    lease_owner    TEXT,
    lease_until    INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    refreshed_at   INTEGER,
    reauth_reason         TEXT    NOT NULL DEFAULT '',
    lease_epoch           INTEGER NOT NULL DEFAULT 0,
    lease_expired_seen_at INTEGER,
    attempts              INTEGER NOT NULL DEFAULT 0,
    suspect               TEXT    NOT NULL DEFAULT '',
    failures              INTEGER NOT NULL DEFAULT 0,
    failing_since         INTEGER,
    last_error            TEXT    NOT NULL DEFAULT '',
    next_attempt_at       INTEGER,
    issued_at             INTEGER,
    UNIQUE (user_id, provider_id)
);
INSERT INTO links_old (id, user_id, provider_id, account_id, account_login, access_token, token_type,
    refresh_token, id_token, expiry, scopes, extra, key_id, generation, state, failure_reason,
    lease_owner, lease_until, created_at, updated_at, refreshed_at, reauth_reason, lease_epoch,
    lease_expired_seen_at, attempts, suspect, failures, failing_since, last_error, next_attempt_at, issued_at)
SELECT id, user_id, provider_id, account_id, account_login, access_token, token_type,
    refresh_token, id_token, expiry, scopes, extra, key_id, generation,
    CASE WHEN state = 'reauth_required' THEN state ELSE 'active' END, failure_reason,
    lease_owner, lease_until, created_at, updated_at, refreshed_at, reauth_reason, lease_epoch,
    lease_expired_seen_at, attempts, suspect, failures, failing_since, last_error, next_attempt_at, issued_at
FROM links;
INSERT INTO sqlite_sequence (name, seq)
SELECT 'links_old', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'links_old');
UPDATE sqlite_sequence SET seq = max(seq, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'links'), 0))
WHERE name = 'links_old';
DROP TABLE links;
ALTER TABLE links_old RENAME TO links;
CREATE INDEX links_active_expiry ON links (expiry) WHERE state = 'active' AND expiry IS NOT NULL;
CREATE INDEX links_key_id ON links (key_id);
CREATE INDEX links_provider_user ON links (provider_id, user_id);
CREATE INDEX links_provider_state_user ON links (provider_id, state, user_id);
CREATE INDEX links_state_user ON links (state, user_id, provider_id);
CREATE INDEX links_reason_user ON links (
    (rtrim(CASE WHEN instr(failure_reason, ':') > 0 THEN substr(failure_reason, 1, instr(failure_reason, ':') - 1) ELSE failure_reason END, ' ')),
    user_id, provider_id) WHERE failure_reason <> '';
CREATE INDEX links_account_login ON links (account_login, user_id, provider_id);
