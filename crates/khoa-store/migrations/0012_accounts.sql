-- Links sent by mail (password reset, email verification), each usable once. Only the
-- SHA-256 of the link's secret is stored. `email` is the address a verification link
-- verifies; `payload` a pending self-registration (JSON, its password already hashed).
CREATE TABLE account_tokens (
    token_hash TEXT PRIMARY KEY,
    purpose    TEXT NOT NULL,
    user_id    BIGINT NOT NULL,
    email      TEXT,
    payload    TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX account_tokens_user_id ON account_tokens (user_id, purpose);
CREATE INDEX account_tokens_expires_at ON account_tokens (expires_at);

-- Sessions: the device that opened them (from its User-Agent), its address, and when
-- the session was last used, for the account page.
ALTER TABLE sessions ADD COLUMN device TEXT;
ALTER TABLE sessions ADD COLUMN address TEXT;
ALTER TABLE sessions ADD COLUMN last_used_at BIGINT NOT NULL DEFAULT 0;
