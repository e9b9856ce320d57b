-- Ending every session and token of one user at once (a password change, a deletion,
-- `khoa user revoke-sessions`): by user, without scanning the token tables.
CREATE INDEX access_tokens_user_id ON access_tokens (user_id);
CREATE INDEX refresh_tokens_user_id ON refresh_tokens (user_id);

-- A rotated token's sealed successor is kept only for the grace window; the cleanup
-- job clears it afterwards, finding the rows to clear by this index.
CREATE INDEX refresh_tokens_sealed_successors ON refresh_tokens (rotated_at) WHERE successor_sealed IS NOT NULL;

-- Clients registered as resource servers may introspect access tokens issued to
-- other clients (RFC 7662 §2.2, RFC 9700 §4.14).
ALTER TABLE clients ADD COLUMN resource_server BOOLEAN NOT NULL DEFAULT FALSE;

-- TCONNECT login payloads with a timestamp and nonce are accepted once; a partner may
-- require them.
ALTER TABLE partners ADD COLUMN require_nonce BOOLEAN NOT NULL DEFAULT FALSE;
CREATE TABLE partner_nonces (
    key        TEXT PRIMARY KEY,         -- partner code, "|", nonce
    expires_at BIGINT NOT NULL
);
CREATE INDEX partner_nonces_expires_at ON partner_nonces (expires_at);
