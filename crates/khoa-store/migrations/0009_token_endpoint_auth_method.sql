-- How each client authenticates at the token endpoint (RFC 7591 §2
-- token_endpoint_auth_method): public clients with none, confidential ones with the
-- RFC 7591 default, client_secret_basic, until registered otherwise.
ALTER TABLE clients ADD COLUMN token_endpoint_auth_method TEXT NOT NULL DEFAULT 'client_secret_basic';
UPDATE clients SET token_endpoint_auth_method = 'none' WHERE is_public;
