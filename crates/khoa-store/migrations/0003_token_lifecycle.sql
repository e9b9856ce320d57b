-- Token lifecycle: rotating refresh tokens in families, clients that always receive a
-- refresh token, and leases that let one process at a time run a background job.

ALTER TABLE clients ADD COLUMN always_issue_refresh_token BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE refresh_tokens (
    token_hash       TEXT PRIMARY KEY,   -- SHA-256 of the opaque handle
    family_id        TEXT NOT NULL,      -- the code's hash for families born of a code
    client_id        TEXT NOT NULL,
    user_id          BIGINT NOT NULL,
    sid              TEXT,
    scope            TEXT NOT NULL,
    auth_time        BIGINT NOT NULL,
    amr              TEXT NOT NULL,
    offline          BOOLEAN NOT NULL,   -- granted offline_access: outlives the session
    issued_at        BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    rotated_at       BIGINT,
    successor_hash   TEXT,
    successor_sealed BYTEA,              -- the successor handle, sealed, for the grace window
    revoked_at       BIGINT
);
CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

CREATE TABLE job_leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  BIGINT NOT NULL
);
