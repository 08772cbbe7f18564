-- +goose Up
-- auth_requests keeps the hash of a code flow's connect session id, never
-- the id itself: the id is the secret of the connect URL, and a database
-- reader must not be able to rebuild that URL. Pending code flows (at most
-- the state TTL old) are dropped; their users press Connect again.
DELETE FROM auth_requests WHERE kind = 'code';
ALTER TABLE auth_requests DROP COLUMN session_id;
ALTER TABLE auth_requests ADD COLUMN session_hash TEXT NOT NULL DEFAULT '';

-- +goose Down
DELETE FROM auth_requests WHERE kind = 'code';
ALTER TABLE auth_requests DROP COLUMN session_hash;
ALTER TABLE auth_requests ADD COLUMN session_id TEXT NOT NULL DEFAULT '';
