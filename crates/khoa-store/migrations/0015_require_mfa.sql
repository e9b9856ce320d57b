-- A client whose users must sign in with two factors (`khoa client update --require-mfa`).
ALTER TABLE clients ADD COLUMN require_mfa BOOLEAN NOT NULL DEFAULT FALSE;
