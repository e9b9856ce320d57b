//! Passwords of people: argon2id with the OWASP Password Storage Cheat Sheet parameters
//! (m = 19 MiB, t = 2, p = 1), stored as PHC strings.

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Longest password accepted; bounds the work one login request can cause.
pub const MAX_PASSWORD_LEN: usize = 1024;
pub const MIN_PASSWORD_LEN: usize = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("password must be at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("password must be at most {MAX_PASSWORD_LEN} bytes")]
    TooLong,
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// Cost parameters of argon2id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for PasswordParams {
    /// OWASP: argon2id, 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        Self { memory_kib: 19 * 1024, iterations: 2, parallelism: 1 }
    }
}

impl PasswordParams {
    fn hasher(&self) -> Result<Argon2<'static>, PasswordError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| PasswordError::Hashing(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

pub fn validate_new_password(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(PasswordError::TooLong);
    }
    Ok(())
}

/// Hashes a password to a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub fn hash_password(password: &str, params: PasswordParams) -> Result<String, PasswordError> {
    let salt = SaltString::encode_b64(&crate::random::random_bytes::<16>())
        .map_err(|e| PasswordError::Hashing(e.to_string()))?;
    Ok(params
        .hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| PasswordError::Hashing(e.to_string()))?
        .to_string())
}

/// [`hash_password`] in caller-owned memory (no 19 MiB allocation per hash): the same
/// PHC string a fresh [`Argon2`] would make with this salt.
pub fn hash_password_reusing(
    password: &str,
    params: PasswordParams,
    memory: &mut VerifyMemory,
) -> Result<String, PasswordError> {
    use base64::engine::general_purpose::STANDARD_NO_PAD;
    use base64::Engine;
    if password.len() > MAX_PASSWORD_LEN {
        return Err(PasswordError::TooLong);
    }
    let salt = crate::random::random_bytes::<16>();
    let argon2 = params.hasher()?;
    let blocks = argon2.params().block_count();
    if memory.0.len() < blocks {
        memory.0.resize(blocks, argon2::Block::default());
    }
    let mut out = [0u8; 32];
    argon2
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, &mut memory.0[..blocks])
        .map_err(|e| PasswordError::Hashing(e.to_string()))?;
    // PHC: the salt and hash in base64 without padding (`password_hash::B64`).
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.memory_kib,
        params.iterations,
        params.parallelism,
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(out)
    ))
}

/// Verifies a password against a stored PHC string, using the parameters recorded in
/// the hash itself. Over-long input and malformed hashes simply do not verify.
pub fn verify_password(password: &str, phc: &str) -> bool {
    verify_password_reusing(password, phc, &mut VerifyMemory::default())
}

/// argon2 working memory kept between verifications, so that a server verifying
/// passwords all day allocates (and fragments) nothing large: m_cost KiB per buffer.
#[derive(Default)]
pub struct VerifyMemory(Vec<argon2::Block>);

/// [`verify_password`] with caller-owned memory; the result is compared in constant time.
pub fn verify_password_reusing(password: &str, phc: &str, memory: &mut VerifyMemory) -> bool {
    use subtle::ConstantTimeEq;
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    let Ok(hash) = PasswordHash::new(phc) else { return false };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else { return false };
    let Ok(params) = Params::try_from(&hash) else { return false };
    // Every cost parameter within its bound, as at import.
    if crate::hashes::argon2_within_bounds(&params).is_err() {
        return false;
    }
    let version = match hash.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else { return false };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let blocks = params.block_count();
    if memory.0.len() < blocks {
        memory.0.resize(blocks, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let computed = Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory.0[..blocks])
        .is_ok();
    computed && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owasp_argon2id_round_trip() {
        let phc = hash_password("correct horse battery", PasswordParams::default()).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("correct horse battery", &phc));
        assert!(!verify_password("correct horse batterY", &phc));
    }

    #[test]
    fn reused_memory_verifies_the_same() {
        let cheap = PasswordParams { memory_kib: 64, iterations: 1, parallelism: 1 };
        let a = hash_password("first password", cheap).unwrap();
        let b = hash_password("second password", PasswordParams::default()).unwrap();
        let mut memory = VerifyMemory::default();
        assert!(verify_password_reusing("first password", &a, &mut memory));
        assert!(verify_password_reusing("second password", &b, &mut memory), "grows to the larger cost");
        assert!(verify_password_reusing("first password", &a, &mut memory), "and still fits the smaller");
        assert!(!verify_password_reusing("second passworD", &b, &mut memory));
        assert!(!verify_password_reusing("x", "$argon2id$v=19$m=999999999,t=1,p=1$c2FsdHNhbHQ$aGFzaA", &mut memory));
    }

    #[test]
    fn hashing_in_reused_memory_makes_the_same_phc_strings() {
        let mut memory = VerifyMemory::default();
        let a = hash_password_reusing("a long password", PasswordParams::default(), &mut memory).unwrap();
        let b = hash_password_reusing("a long password", PasswordParams::default(), &mut memory).unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "a salt of its own each");
        assert!(PasswordHash::new(&a).is_ok(), "a PHC string the password-hash crate reads");
        assert!(verify_password("a long password", &a));
        assert!(verify_password("a long password", &b));
        assert!(!verify_password("a long passworD", &a));
        assert!(!crate::hashes::needs_rehash(&a, PasswordParams::default()));
        assert_eq!(
            hash_password_reusing(&"x".repeat(2000), PasswordParams::default(), &mut memory),
            Err(PasswordError::TooLong)
        );
    }

    #[test]
    fn rules_and_garbage() {
        assert_eq!(validate_new_password("short"), Err(PasswordError::TooShort));
        assert_eq!(validate_new_password(&"x".repeat(2000)), Err(PasswordError::TooLong));
        assert!(!verify_password("x", "not a hash"));
        assert!(!verify_password(&"x".repeat(5000), "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA"));
    }
}
