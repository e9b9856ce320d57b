-- A person's credentials beside their password, one row each: authenticator apps,
-- recovery codes and passkeys (the kind is `khoa_core::authn::Method`'s name).
-- `lookup` is what a presented credential is found by (a passkey's credential id, a
-- recovery code's SHA-256); `data` what verifying it takes (a TOTP secret sealed
-- under the master key, a passkey); `counter` the last accepted TOTP time step or a
-- passkey's signature counter, replaced only by a compare-and-swap.
CREATE TABLE credentials (
    id           BIGSERIAL PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    name         TEXT,
    lookup       TEXT,
    data         TEXT NOT NULL,
    counter      BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    used_at      BIGINT
);
CREATE INDEX credentials_user ON credentials (user_id, kind);
CREATE UNIQUE INDEX credentials_lookup ON credentials (kind, lookup);
