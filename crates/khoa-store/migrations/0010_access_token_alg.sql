-- The algorithm of a client's JWT access tokens; NULL: the server's.
ALTER TABLE clients ADD COLUMN access_token_signed_response_alg TEXT;
