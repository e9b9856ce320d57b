-- A client's revision: raised by every change, the admin API's ETag, so that an update
-- made from a stale copy is refused (If-Match) in the same statement that would write it.
ALTER TABLE clients ADD COLUMN revision BIGINT NOT NULL DEFAULT 1;

-- The audit trail: every admin change and security event, written in the transaction
-- of what it records. `detail` is JSON and never holds a secret.
CREATE TABLE audit_events (
    id        BIGSERIAL PRIMARY KEY,
    at        BIGINT NOT NULL,
    type      TEXT NOT NULL,
    actor     TEXT NOT NULL,
    client_id TEXT,
    user_id   BIGINT,
    address   TEXT,
    detail    TEXT NOT NULL
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_type ON audit_events (type, id);
CREATE INDEX audit_events_client_id ON audit_events (client_id, id);
CREATE INDEX audit_events_user_id ON audit_events (user_id, id);

-- Users: a revision for If-Match, disabling, and the organisation's own attributes
-- (a JSON object of strings).
ALTER TABLE users ADD COLUMN revision BIGINT NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN disabled_at BIGINT;
ALTER TABLE users ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
CREATE INDEX users_email ON users (email);
