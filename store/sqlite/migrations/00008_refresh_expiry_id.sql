-- The background refresher's due-links page (ListLinksExpiringBefore) is
-- ordered by (expiry, id) and resumes after the last (expiry, id) it read.
-- With id in the index the page is one range read in order even when many
-- links share an expiry (a bulk import gives thousands the same one),
-- instead of a sort of all the ties on every page.

-- +goose Up
DROP INDEX links_refresh_expiry;
CREATE INDEX links_refresh_expiry ON links (expiry, id) WHERE state IN ('active', 'degraded') AND expiry IS NOT NULL;

-- +goose Down
DROP INDEX links_refresh_expiry;
CREATE INDEX links_refresh_expiry ON links (expiry) WHERE state IN ('active', 'degraded') AND expiry IS NOT NULL;
