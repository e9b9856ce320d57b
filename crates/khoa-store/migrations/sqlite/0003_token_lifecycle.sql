-- Token lifecycle: rotating refresh tokens in families, clients that always receive a
-- refresh token, and leases that let one process at a time run a background job.

ALTER TABLE clients ADD COLUMN always_issue_refresh_token BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE refresh_tokens (
    token_hash       TEXT PRIMARY KEY,   -- SHA-256 of the opaque handle
    family_id        TEXT NOT NULL,      -- the code's hash for families born of a code
    client_id        TEXT NOT NULL,
    user_id          INTEGER NOT NULL,
    sid              TEXT,
    scope            TEXT NOT NULL,
    auth_time        INTEGER NOT NULL,
    amr              TEXT NOT NULL,
    offline          BOOLEAN NOT NULL,   -- granted offline_access: outlives the session
    issued_at        INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    rotated_at       INTEGER,
    successor_hash   TEXT,
    successor_sealed BLOB,              -- the successor handle, sealed, for the grace window
    revoked_at       INTEGER
);
CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

CREATE TABLE job_leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  INTEGER NOT NULL
);
