-- Browser apps: origins allowed beyond those of the redirect URIs (a JSON array), and
-- the previous secret of a rotation, accepted until its overlap ends.
ALTER TABLE clients ADD COLUMN allowed_origins TEXT NOT NULL DEFAULT '[]';
ALTER TABLE clients ADD COLUMN previous_secret_hash TEXT;
ALTER TABLE clients ADD COLUMN previous_secret_expires_at BIGINT;
