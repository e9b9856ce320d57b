-- Foundation: clients, users, signing keys, and the change epoch that tells every
-- server process to refresh its caches. Times are Unix seconds.

CREATE TABLE clients (
    client_id                    TEXT PRIMARY KEY,
    client_secret_hash           TEXT,
    is_public                    BOOLEAN NOT NULL,
    redirect_uris                TEXT NOT NULL,   -- JSON array of strings
    post_logout_redirect_uris    TEXT NOT NULL,   -- JSON array of strings
    frontchannel_logout_uri      TEXT,
    backchannel_logout_uri       TEXT,
    grant_types                  TEXT NOT NULL,   -- JSON array of strings
    scopes                       TEXT NOT NULL,   -- JSON array of strings
    skip_consent                 BOOLEAN NOT NULL,
    client_name                  TEXT,
    logo_uri                     TEXT,
    client_uri                   TEXT,
    policy_uri                   TEXT,
    tos_uri                      TEXT,
    owner                        TEXT,
    contacts                     TEXT NOT NULL,   -- JSON array of strings
    metadata                     TEXT NOT NULL,   -- JSON object
    id_token_signed_response_alg TEXT NOT NULL,
    authorization_code_lifetime  BIGINT,
    access_token_lifetime        BIGINT,
    id_token_lifetime            BIGINT,
    refresh_token_lifetime       BIGINT,
    created_at                   BIGINT NOT NULL,
    updated_at                   BIGINT NOT NULL
);

CREATE TABLE users (
    id                    BIGSERIAL PRIMARY KEY,
    username              TEXT NOT NULL UNIQUE,
    password_hash         TEXT NOT NULL,
    email                 TEXT,
    email_verified        BOOLEAN NOT NULL DEFAULT FALSE,
    name                  TEXT,
    phone_number          TEXT,
    phone_number_verified BOOLEAN NOT NULL DEFAULT FALSE,
    picture               TEXT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    kid                TEXT PRIMARY KEY,
    alg                TEXT NOT NULL,
    generation         BIGINT NOT NULL,
    public_jwk         TEXT NOT NULL,
    private_key_sealed BYTEA NOT NULL,     -- AES-256-GCM under the master key, AAD = kid
    created_at         BIGINT NOT NULL,
    activates_at       BIGINT NOT NULL,
    -- One key per generation and algorithm: two processes generating the first key at
    -- once, or rotating at once, cannot both win.
    UNIQUE (alg, generation)
);

CREATE TABLE change_epoch (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    epoch BIGINT NOT NULL
);
INSERT INTO change_epoch (id, epoch) VALUES (1, 0);
