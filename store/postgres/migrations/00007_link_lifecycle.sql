-- Link lifecycle: the states degraded and idle, the last use of each link,
-- the indexes of the background refresher and the keep-alive, and the
-- number of links per provider and state kept by triggers (the
-- tokenbroker_links gauge reads it).

-- +goose Up
ALTER TABLE links DROP CONSTRAINT links_state_check;
ALTER TABLE links ADD CONSTRAINT links_state_check CHECK (state IN ('active', 'degraded', 'idle', 'reauth_required'));
-- When a token of the link was last asked for (or it was connected),
-- written at most about once per interval per link. Links that existed
-- before count as used now, so an upgrade leaves none idle at once.
ALTER TABLE links ADD COLUMN last_used_at timestamptz;
UPDATE links SET last_used_at = now();

-- ListLinksExpiringBefore: the links the background refresher keeps fresh,
-- by expiry.
DROP INDEX links_active_expiry;
CREATE INDEX links_refresh_expiry ON links (expiry) WHERE state IN ('active', 'degraded') AND expiry IS NOT NULL;
-- ListStaleLinks: a provider's links in a state by the age of their tokens.
CREATE INDEX links_provider_state_refreshed ON links (provider_id, state, refreshed_at);

-- Links per provider and state, kept by the trigger below in the
-- transaction of every write that adds, removes or moves a link.
CREATE TABLE link_state_counts (
    provider_id text   NOT NULL,
    state       text   NOT NULL,
    n           bigint NOT NULL,
    PRIMARY KEY (provider_id, state)
);
INSERT INTO link_state_counts (provider_id, state, n)
SELECT provider_id, state, count(*) FROM links GROUP BY provider_id, state;

-- A move touches two counter rows; it locks them in the order of the state
-- names, so two moves in opposite directions cannot deadlock. A statement
-- of one link row therefore never waits in a cycle; writes of many link
-- rows in one statement change no state (see RecordLinkUse).
-- +goose StatementBegin
CREATE FUNCTION link_state_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO link_state_counts (provider_id, state, n) VALUES (NEW.provider_id, NEW.state, 1)
        ON CONFLICT (provider_id, state) DO UPDATE SET n = link_state_counts.n + 1;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE link_state_counts SET n = n - 1 WHERE provider_id = OLD.provider_id AND state = OLD.state;
    ELSIF OLD.state < NEW.state THEN
        UPDATE link_state_counts SET n = n - 1 WHERE provider_id = OLD.provider_id AND state = OLD.state;
        INSERT INTO link_state_counts (provider_id, state, n) VALUES (NEW.provider_id, NEW.state, 1)
        ON CONFLICT (provider_id, state) DO UPDATE SET n = link_state_counts.n + 1;
    ELSE
        INSERT INTO link_state_counts (provider_id, state, n) VALUES (NEW.provider_id, NEW.state, 1)
        ON CONFLICT (provider_id, state) DO UPDATE SET n = link_state_counts.n + 1;
        UPDATE link_state_counts SET n = n - 1 WHERE provider_id = OLD.provider_id AND state = OLD.state;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER links_count_insert_delete AFTER INSERT OR DELETE ON links
    FOR EACH ROW EXECUTE FUNCTION link_state_count();
CREATE TRIGGER links_count_state AFTER UPDATE OF state ON links
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION link_state_count();

-- +goose Down
DROP TRIGGER links_count_state ON links;
DROP TRIGGER links_count_insert_delete ON links;
DROP FUNCTION link_state_count();
DROP TABLE link_state_counts;
DROP INDEX links_provider_state_refreshed;
DROP INDEX links_refresh_expiry;
UPDATE links SET state = 'active' WHERE state IN ('degraded', 'idle');
CREATE INDEX links_active_expiry ON links (expiry) WHERE state = 'active' AND expiry IS NOT NULL;
ALTER TABLE links DROP COLUMN last_used_at;
ALTER TABLE links DROP CONSTRAINT links_state_check;
ALTER TABLE links ADD CONSTRAINT links_state_check CHECK (state IN ('active', 'reauth_required'));
