-- Logout revokes every access and refresh token of a session by its sid
-- (Store::logout_session). Without these indexes each logout scans both tables while
-- it holds the write lock: 25 ms per table at 300,000 tokens (SQLite), against 0.04 ms.
CREATE INDEX access_tokens_sid ON access_tokens (sid);
CREATE INDEX refresh_tokens_sid ON refresh_tokens (sid);
