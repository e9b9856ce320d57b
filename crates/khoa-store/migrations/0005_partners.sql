-- TCONNECT partners: a Partner-Code bound to a confidential client and a 256-bit key,
-- sealed under the master key like the signing keys.
CREATE TABLE partners (
    code       TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    key_sealed BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
