-- Logout: the outbox of back-channel logout notifications, written in the same
-- transaction that ends a session and drained by a worker in every process.

CREATE TABLE logout_deliveries (
    id              TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL,
    uri             TEXT NOT NULL,
    sub             TEXT NOT NULL,
    sid             TEXT NOT NULL,
    status          TEXT NOT NULL,       -- pending | delivered | failed | expired
    attempts        BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    claimed_by      TEXT,
    claimed_until   BIGINT NOT NULL,
    delivered_at    BIGINT,
    last_status     BIGINT,              -- HTTP status of the last attempt
    last_error      TEXT,
    expires_at      BIGINT NOT NULL      -- kept for inspection until then
);
CREATE INDEX logout_deliveries_due ON logout_deliveries (status, next_attempt_at);
CREATE INDEX logout_deliveries_expires_at ON logout_deliveries (expires_at);
