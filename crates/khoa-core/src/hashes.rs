//! Password hashes made by other systems, accepted at import so that nobody must reset
//! a password when an organisation moves to khoa: bcrypt (`$2a$`, `$2b$`, `$2y$`),
//! argon2id and argon2i (PHC), PBKDF2-SHA256 (PHC and Django's form) and scrypt (PHC).
//! A login verifies against whichever it is; khoa then stores argon2id instead
//! ([`needs_rehash`]). Costs are bounded, so a hash cannot make one login take minutes
//! or gigabytes.

use crate::password::{verify_password_reusing, PasswordParams, VerifyMemory, MAX_PASSWORD_LEN};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use password_hash::{PasswordHash, PasswordVerifier};
use subtle::ConstantTimeEq;

/// A recognised kind of hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Argon2id,
    Argon2i,
    Bcrypt,
    /// `$pbkdf2-sha256$i=…,l=32$salt$hash` (PHC).
    Pbkdf2Sha256,
    /// `pbkdf2_sha256$iterations$salt$hash` (Django).
    DjangoPbkdf2Sha256,
    Scrypt,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Argon2id => "argon2id",
            Self::Argon2i => "argon2i",
            Self::Bcrypt => "bcrypt",
            Self::Pbkdf2Sha256 => "pbkdf2-sha256",
            Self::DjangoPbkdf2Sha256 => "django pbkdf2_sha256",
            Self::Scrypt => "scrypt",
        }
    }
}

/// Bounds on what an imported hash may cost to verify.
pub const MAX_BCRYPT_COST: u32 = 16;
pub const MAX_PBKDF2_ITERATIONS: u32 = 5_000_000;
/// scrypt's memory is 128 · r · N bytes.
pub const MAX_SCRYPT_MEMORY: u64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HashError {
    #[error("not a password hash khoa can import (bcrypt $2a$/$2b$/$2y$, argon2id or argon2i, pbkdf2-sha256 in PHC or Django form, scrypt)")]
    Unknown,
    #[error("a malformed {0} hash")]
    Malformed(&'static str),
    #[error("the {0} hash's cost is beyond what khoa verifies ({1})")]
    TooCostly(&'static str, String),
}

/// Which scheme `hash` is, with its format and cost checked.
pub fn scheme_of(hash: &str) -> Result<Scheme, HashError> {
    if let Some(rest) = hash.strip_prefix("pbkdf2_sha256$") {
        let mut parts = rest.split('$');
        let (Some(iterations), Some(salt), Some(digest), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(HashError::Malformed("Django pbkdf2_sha256"));
        };
        let iterations: u32 = iterations.parse().map_err(|_| HashError::Malformed("Django pbkdf2_sha256"))?;
        let decoded = STANDARD.decode(digest).map_err(|_| HashError::Malformed("Django pbkdf2_sha256"))?;
        if iterations == 0 || salt.is_empty() || decoded.len() != 32 {
            return Err(HashError::Malformed("Django pbkdf2_sha256"));
        }
        if iterations > MAX_PBKDF2_ITERATIONS {
            return Err(HashError::TooCostly("pbkdf2", format!("{iterations} iterations")));
        }
        return Ok(Scheme::DjangoPbkdf2Sha256);
    }
    if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        let parts = bcrypt_parts(hash).ok_or(HashError::Malformed("bcrypt"))?;
        if parts > MAX_BCRYPT_COST {
            return Err(HashError::TooCostly("bcrypt", format!("cost {parts}")));
        }
        return Ok(Scheme::Bcrypt);
    }
    let phc = PasswordHash::new(hash).map_err(|_| HashError::Unknown)?;
    match phc.algorithm.as_str() {
        "argon2id" | "argon2i" => {
            let params = argon2::Params::try_from(&phc).map_err(|_| HashError::Malformed("argon2"))?;
            if params.m_cost() > 256 * 1024 {
                return Err(HashError::TooCostly("argon2", format!("m={} KiB", params.m_cost())));
            }
            if phc.salt.is_none() || phc.hash.is_none() {
                return Err(HashError::Malformed("argon2"));
            }
            Ok(if phc.algorithm.as_str() == "argon2id" { Scheme::Argon2id } else { Scheme::Argon2i })
        }
        "pbkdf2-sha256" => {
            let params = pbkdf2::Params::try_from(&phc).map_err(|_| HashError::Malformed("pbkdf2-sha256"))?;
            if params.rounds > MAX_PBKDF2_ITERATIONS {
                return Err(HashError::TooCostly("pbkdf2", format!("{} iterations", params.rounds)));
            }
            if phc.salt.is_none() || phc.hash.is_none() {
                return Err(HashError::Malformed("pbkdf2-sha256"));
            }
            Ok(Scheme::Pbkdf2Sha256)
        }
        "scrypt" => {
            let params = scrypt::Params::try_from(&phc).map_err(|_| HashError::Malformed("scrypt"))?;
            let memory = 128u64 * u64::from(params.r()) * (1u64 << params.log_n());
            if memory > MAX_SCRYPT_MEMORY {
                return Err(HashError::TooCostly("scrypt", format!("{} MiB", memory >> 20)));
            }
            if phc.salt.is_none() || phc.hash.is_none() {
                return Err(HashError::Malformed("scrypt"));
            }
            Ok(Scheme::Scrypt)
        }
        _ => Err(HashError::Unknown),
    }
}

/// The cost of a `$2x$NN$` + 53 characters bcrypt hash.
fn bcrypt_parts(hash: &str) -> Option<u32> {
    let rest = &hash.get(4..)?;
    let (cost, body) = rest.split_once('$')?;
    let cost: u32 = cost.parse().ok()?;
    (cost >= 4 && cost.to_string().len() <= 2 && body.len() == 53).then_some(cost)
}

/// Verifies `password` against a stored hash of any accepted scheme (khoa's own
/// argon2id included), comparing in constant time; malformed or over-costly hashes
/// and over-long passwords simply do not verify.
pub fn verify_any(password: &str, hash: &str, memory: &mut VerifyMemory) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    match scheme_of(hash) {
        Ok(Scheme::Argon2id | Scheme::Argon2i) => verify_password_reusing(password, hash, memory),
        Ok(Scheme::Bcrypt) => bcrypt::verify(password, hash).unwrap_or(false),
        Ok(Scheme::Pbkdf2Sha256) => {
            PasswordHash::new(hash).is_ok_and(|h| pbkdf2::Pbkdf2.verify_password(password.as_bytes(), &h).is_ok())
        }
        Ok(Scheme::Scrypt) => {
            PasswordHash::new(hash).is_ok_and(|h| scrypt::Scrypt.verify_password(password.as_bytes(), &h).is_ok())
        }
        Ok(Scheme::DjangoPbkdf2Sha256) => verify_django(password, hash),
        Err(_) => false,
    }
}

fn verify_django(password: &str, hash: &str) -> bool {
    let mut parts = hash.trim_start_matches("pbkdf2_sha256$").split('$');
    let (Some(iterations), Some(salt), Some(digest)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(iterations), Ok(expected)) = (iterations.parse::<u32>(), STANDARD.decode(digest)) else { return false };
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), salt.as_bytes(), iterations, &mut out);
    bool::from(out.as_slice().ct_eq(&expected))
}

/// Whether a verified hash should be replaced by khoa's own: anything but argon2id
/// with the current parameters.
pub fn needs_rehash(hash: &str, params: PasswordParams) -> bool {
    let Ok(phc) = PasswordHash::new(hash) else { return true };
    if phc.algorithm.as_str() != "argon2id" {
        return true;
    }
    let Ok(p) = argon2::Params::try_from(&phc) else { return true };
    (p.m_cost(), p.t_cost(), p.p_cost()) != (params.memory_kib, params.iterations, params.parallelism)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::hash_password;

    const PASSWORD: &str = "correct horse battery staple";

    /// One hash of each scheme, made by its own library as the system we import from
    /// would have.
    fn foreign_hashes() -> Vec<(Scheme, String)> {
        use password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let argon2i = argon2::Argon2::new(
            argon2::Algorithm::Argon2i,
            argon2::Version::V0x13,
            argon2::Params::new(4096, 3, 1, None).unwrap(),
        )
        .hash_password(PASSWORD.as_bytes(), &salt)
        .unwrap()
        .to_string();
        let argon2id_other = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(8192, 1, 1, None).unwrap(),
        )
        .hash_password(PASSWORD.as_bytes(), &salt)
        .unwrap()
        .to_string();
        let pbkdf2 = pbkdf2::Pbkdf2
            .hash_password_customized(
                PASSWORD.as_bytes(),
                Some(pbkdf2::Algorithm::Pbkdf2Sha256.ident()),
                None,
                pbkdf2::Params { rounds: 10_000, output_length: 32 },
                &salt,
            )
            .unwrap()
            .to_string();
        let scrypt = scrypt::Scrypt
            .hash_password_customized(
                PASSWORD.as_bytes(),
                None,
                None,
                scrypt::Params::new(10, 8, 1, 32).unwrap(),
                &salt,
            )
            .unwrap()
            .to_string();
        let mut django_digest = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(PASSWORD.as_bytes(), b"seasalt", 20_000, &mut django_digest);
        let django = format!("pbkdf2_sha256$20000$seasalt${}", STANDARD.encode(django_digest));
        let bcrypt_2b = bcrypt::hash(PASSWORD, 4).unwrap();
        let bcrypt_2y = bcrypt_2b.replacen("$2b$", "$2y$", 1);
        let bcrypt_2a = bcrypt_2b.replacen("$2b$", "$2a$", 1);
        vec![
            (Scheme::Argon2i, argon2i),
            (Scheme::Argon2id, argon2id_other),
            (Scheme::Pbkdf2Sha256, pbkdf2),
            (Scheme::Scrypt, scrypt),
            (Scheme::DjangoPbkdf2Sha256, django),
            (Scheme::Bcrypt, bcrypt_2b),
            (Scheme::Bcrypt, bcrypt_2y),
            (Scheme::Bcrypt, bcrypt_2a),
        ]
    }

    #[test]
    fn every_scheme_verifies_and_asks_for_argon2id() {
        let mut memory = VerifyMemory::default();
        for (scheme, hash) in foreign_hashes() {
            assert_eq!(scheme_of(&hash), Ok(scheme), "{hash}");
            assert!(verify_any(PASSWORD, &hash, &mut memory), "{scheme:?} {hash}");
            assert!(!verify_any("correct horse battery stapler", &hash, &mut memory), "{scheme:?}");
            assert!(needs_rehash(&hash, PasswordParams::default()), "{scheme:?}");
        }
        let own = hash_password(PASSWORD, PasswordParams::default()).unwrap();
        assert_eq!(scheme_of(&own), Ok(Scheme::Argon2id));
        assert!(verify_any(PASSWORD, &own, &mut memory));
        assert!(!needs_rehash(&own, PasswordParams::default()));
    }

    /// Hashes made by other implementations: Python's hashlib (Django's form, PHC
    /// PBKDF2 and scrypt) and the crypt_blowfish test vectors (bcrypt).
    #[test]
    fn hashes_made_elsewhere_verify() {
        let vectors = [
            ("lètmein", "pbkdf2_sha256$30000$seasalt2$a75qzbogeVhNFeMqhdgyyoqGKpIzYUo651sq57RERew="),
            (
                "lètmein",
                "$pbkdf2-sha256$i=25000,l=32$a2hvYS1pbXBvcnQtc2FsdA$L72/oLT1NZn8p/vZA/jIwV3SohGQzcHqIYv/mrOasoQ",
            ),
            ("lètmein", "$scrypt$ln=12,r=8,p=1$a2hvYS1pbXBvcnQtc2FsdA$/qxYk/lpA5omQlk/yXy6BAIlRcHyjp8BFygvmZAtCY8"),
            ("U*U", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"),
            ("U*U*", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK"),
        ];
        let mut memory = VerifyMemory::default();
        for (password, hash) in vectors {
            assert!(verify_any(password, hash, &mut memory), "{hash}");
            assert!(!verify_any("letmein", hash, &mut memory), "{hash}");
        }
    }

    #[test]
    fn malformed_unknown_and_costly_hashes_are_refused() {
        let cases = [
            ("", HashError::Unknown),
            ("plaintext-password", HashError::Unknown),
            ("$1$md5crypt$xyz", HashError::Unknown),
            ("$argon2d$v=19$m=4096,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo", HashError::Unknown),
            ("$2b$04$short", HashError::Malformed("bcrypt")),
            (
                "$2b$31$abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyza",
                HashError::TooCostly("bcrypt", "cost 31".into()),
            ),
            ("pbkdf2_sha256$abc$salt$AAAA", HashError::Malformed("Django pbkdf2_sha256")),
            ("pbkdf2_sha256$100$salt$AAAA", HashError::Malformed("Django pbkdf2_sha256")),
            ("pbkdf2_sha256$100", HashError::Malformed("Django pbkdf2_sha256")),
            (
                "pbkdf2_sha256$99000000$salt$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                HashError::TooCostly("pbkdf2", "99000000 iterations".into()),
            ),
            (
                "$scrypt$ln=22,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
                HashError::TooCostly("scrypt", "4096 MiB".into()),
            ),
        ];
        for (hash, expected) in cases {
            assert_eq!(scheme_of(hash), Err(expected), "{hash}");
            assert!(!verify_any("anything at all", hash, &mut VerifyMemory::default()));
        }
    }
}
