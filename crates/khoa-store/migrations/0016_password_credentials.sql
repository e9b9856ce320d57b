-- The password becomes a credential like the others (`kind = 'password'`, its PHC hash
-- in `data`), one per person. Existing hashes move as they are, so nobody resets
-- anything; the users row keeps none from now on.
CREATE UNIQUE INDEX IF NOT EXISTS credentials_one_password ON credentials (user_id) WHERE kind = 'password';
INSERT INTO credentials (user_id, kind, data, counter, created_at)
    SELECT id, 'password', password_hash, 0, created_at FROM users WHERE password_hash <> '';
UPDATE users SET password_hash = '';
