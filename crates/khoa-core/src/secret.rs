//! Client secrets: generation, hashing for storage, constant-time verification.
//!
//! Client secrets are machine credentials with at least 256 bits of entropy (generated)
//! or at least 32 characters (operator-supplied), so a salted SHA-256 is the right
//! storage hash: brute force is infeasible, and verification stays cheap enough that
//! client authentication is never the bottleneck of a token endpoint (unlike bcrypt-bound
//! servers). Passwords of people use argon2id instead (see [`crate::password`]).

use crate::random::{random_bytes, random_token};
use aws_lc_rs::digest::{Context, SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use subtle::ConstantTimeEq;

/// Operator-supplied secrets must be at least this long.
pub const MIN_CLIENT_SECRET_LEN: usize = 32;
const SCHEME: &str = "sha256";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("client secret must be at least {MIN_CLIENT_SECRET_LEN} characters")]
    TooShort,
    #[error("client secret must be printable ASCII without spaces")]
    BadCharacters,
}

/// A new 256-bit client secret, base64url (43 characters).
pub fn generate_client_secret() -> String {
    random_token::<32>()
}

/// Checks an operator-supplied secret against the registration rules.
pub fn validate_client_secret(secret: &str) -> Result<(), SecretError> {
    if secret.chars().count() < MIN_CLIENT_SECRET_LEN {
        return Err(SecretError::TooShort);
    }
    // RFC 6749 Appendix A.2: client_secret = *VSCHAR; we also refuse spaces so that the
    // secret survives shells and configuration files unchanged.
    if !secret.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(SecretError::BadCharacters);
    }
    Ok(())
}

fn digest(salt: &[u8], secret: &str) -> Vec<u8> {
    let mut ctx = Context::new(&SHA256);
    ctx.update(salt);
    ctx.update(secret.as_bytes());
    ctx.finish().as_ref().to_vec()
}

/// The stored form of a secret: `sha256$<salt>$<digest>` (base64url).
pub fn hash_client_secret(secret: &str) -> String {
    let salt = random_bytes::<16>();
    format!("{SCHEME}${}${}", URL_SAFE_NO_PAD.encode(salt), URL_SAFE_NO_PAD.encode(digest(&salt, secret)))
}

/// Constant-time check of a presented secret against its stored hash. A malformed
/// stored hash never verifies.
pub fn verify_client_secret(presented: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(SCHEME), Some(salt), Some(expected), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(salt), Ok(expected)) = (URL_SAFE_NO_PAD.decode(salt), URL_SAFE_NO_PAD.decode(expected)) else {
        return false;
    };
    digest(&salt, presented).ct_eq(&expected).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secret_is_256_bit_and_verifies() {
        let s = generate_client_secret();
        assert_eq!(URL_SAFE_NO_PAD.decode(&s).unwrap().len(), 32);
        let stored = hash_client_secret(&s);
        assert!(!stored.contains(&s));
        assert!(verify_client_secret(&s, &stored));
        assert!(!verify_client_secret(&format!("{s}x"), &stored));
    }

    #[test]
    fn same_secret_hashes_differently() {
        let s = generate_client_secret();
        assert_ne!(hash_client_secret(&s), hash_client_secret(&s));
    }

    #[test]
    fn supplied_secret_rules() {
        assert_eq!(validate_client_secret("short"), Err(SecretError::TooShort));
        assert_eq!(validate_client_secret("this has spaces in it but is long enough"), Err(SecretError::BadCharacters));
        assert!(validate_client_secret("a:b%c-0123456789-0123456789-0123456789").is_ok());
    }

    #[test]
    fn malformed_stored_hash_never_verifies() {
        for stored in ["", "sha256$", "md5$a$b", "sha256$!!$!!", "sha256$a$b$c"] {
            assert!(!verify_client_secret("anything", stored), "{stored}");
        }
    }
}
