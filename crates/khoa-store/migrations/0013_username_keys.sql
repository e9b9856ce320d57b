-- Usernames are unique by their key (NFKC, case folded: `khoa_core::user::username_key`),
-- not only as typed, so that `Alice` cannot be created beside `alice`. The key is
-- computed in Rust: existing rows get theirs when the store migrates, and a row whose
-- key another row already has keeps none and is reported (`khoa migrate`, and a warning
-- at every start) until an operator renames it.
ALTER TABLE users ADD COLUMN username_key TEXT;
CREATE UNIQUE INDEX users_by_username_key ON users (username_key);
