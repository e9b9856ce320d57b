-- The authorization code flow: interactions (requests waiting for login or consent),
-- SSO sessions and the clients they served, consents, codes, issued access tokens and
-- login throttling. Browser and client handles are stored only as SHA-256 hashes.

CREATE TABLE interactions (
    id_hash    TEXT PRIMARY KEY,
    csrf_token TEXT NOT NULL,
    request    TEXT NOT NULL,            -- the validated authorization request (JSON)
    sid        TEXT,                     -- set once the user logged in
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX interactions_expires_at ON interactions (expires_at);

CREATE TABLE sessions (
    id_hash    TEXT PRIMARY KEY,         -- SHA-256 of the cookie value
    sid        TEXT NOT NULL UNIQUE,     -- public id: the sid claim
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    auth_time  BIGINT NOT NULL,
    amr        TEXT NOT NULL,            -- JSON array (RFC 8176 values)
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at   BIGINT
);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- Every client that received a code in a session (logout notifies them).
CREATE TABLE session_clients (
    sid        TEXT NOT NULL REFERENCES sessions (sid) ON DELETE CASCADE,
    client_id  TEXT NOT NULL,
    first_at   BIGINT NOT NULL,
    PRIMARY KEY (sid, client_id)
);

CREATE TABLE consents (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,            -- space-delimited, sorted
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

CREATE TABLE authorization_codes (
    code_hash         TEXT PRIMARY KEY,
    client_id         TEXT NOT NULL,
    user_id           BIGINT NOT NULL,
    sid               TEXT NOT NULL,
    redirect_uri      TEXT NOT NULL,
    redirect_uri_sent BOOLEAN NOT NULL,
    scope             TEXT NOT NULL,
    nonce             TEXT,
    code_challenge    TEXT,
    auth_time         BIGINT NOT NULL,
    amr               TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    consumed_at       BIGINT
);
CREATE INDEX authorization_codes_expires_at ON authorization_codes (expires_at);

-- Issued access tokens, so that they can be revoked before they expire.
CREATE TABLE access_tokens (
    jti        TEXT PRIMARY KEY,
    grant_id   TEXT NOT NULL,            -- what it was issued from (a code's hash)
    client_id  TEXT NOT NULL,
    user_id    BIGINT,
    sid        TEXT,
    scope      TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX access_tokens_grant_id ON access_tokens (grant_id);
CREATE INDEX access_tokens_expires_at ON access_tokens (expires_at);

CREATE TABLE login_throttle (
    key             TEXT PRIMARY KEY,    -- "user:NAME" or "ip:ADDRESS"
    failures        BIGINT NOT NULL,
    last_failure_at BIGINT NOT NULL,
    blocked_until   BIGINT NOT NULL
);
