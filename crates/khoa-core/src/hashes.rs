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

/// Bounds on what an imported hash may cost to verify: every parameter of every
/// scheme, each by the time and memory it makes one login attempt cost (measured in
/// docs/security.md: each maximum is a second or two of one core, and at most 256 MiB).
pub const MAX_BCRYPT_COST: u32 = 16;
pub const MAX_PBKDF2_ITERATIONS: u32 = 5_000_000;
/// argon2's memory `m`, in KiB (256 MiB).
pub const MAX_ARGON2_MEMORY_KIB: u32 = 256 * 1024;
/// argon2's passes `t`.
pub const MAX_ARGON2_PASSES: u32 = 64;
/// argon2's lanes `p` (khoa computes them one after another: they add no speed).
pub const MAX_ARGON2_LANES: u32 = 16;
/// argon2's work `m · t`, in KiB processed (1 GiB: libsodium's "moderate" fits).
pub const MAX_ARGON2_WORK_KIB: u64 = 1024 * 1024;
/// scrypt's `N` as its base-2 logarithm `ln`.
pub const MAX_SCRYPT_LOG_N: u8 = 20;
/// scrypt's block size `r`.
pub const MAX_SCRYPT_R: u32 = 32;
/// scrypt's parallelism `p` (its lanes are computed one after another too).
pub const MAX_SCRYPT_P: u32 = 16;
/// scrypt's memory, 128 · r · (N + p) bytes.
pub const MAX_SCRYPT_MEMORY: u64 = 256 * 1024 * 1024;
/// scrypt's work, 128 · r · N · p bytes mixed.
pub const MAX_SCRYPT_WORK: u64 = 1024 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HashError {
    #[error("not a password hash khoa can import (bcrypt $2a$/$2b$/$2y$, argon2id or argon2i, pbkdf2-sha256 in PHC or Django form, scrypt)")]
    Unknown,
    #[error("a malformed {0} hash")]
    Malformed(&'static str),
    /// A parameter beyond its bound: the scheme, the parameter, its value and the bound.
    #[error("the {scheme} hash's {parameter}={value} is beyond what khoa verifies (at most {max})")]
    TooCostly { scheme: &'static str, parameter: &'static str, value: u64, max: u64 },
}

/// `value` of `parameter` if it is at most `max`.
fn bounded(scheme: &'static str, parameter: &'static str, value: u64, max: u64) -> Result<(), HashError> {
    if value > max {
        return Err(HashError::TooCostly { scheme, parameter, value, max });
    }
    Ok(())
}

/// Which scheme `hash` is, with its format and every cost parameter checked.
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
        bounded("pbkdf2", "iterations", iterations.into(), MAX_PBKDF2_ITERATIONS.into())?;
        return Ok(Scheme::DjangoPbkdf2Sha256);
    }
    if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        let cost = bcrypt_parts(hash).ok_or(HashError::Malformed("bcrypt"))?;
        bounded("bcrypt", "cost", cost.into(), MAX_BCRYPT_COST.into())?;
        return Ok(Scheme::Bcrypt);
    }
    let phc = PasswordHash::new(hash).map_err(|_| HashError::Unknown)?;
    match phc.algorithm.as_str() {
        "argon2id" | "argon2i" => {
            let params = argon2::Params::try_from(&phc).map_err(|_| HashError::Malformed("argon2"))?;
            argon2_within_bounds(&params)?;
            if phc.salt.is_none() || phc.hash.is_none() {
                return Err(HashError::Malformed("argon2"));
            }
            Ok(if phc.algorithm.as_str() == "argon2id" { Scheme::Argon2id } else { Scheme::Argon2i })
        }
        "pbkdf2-sha256" => {
            let params = pbkdf2::Params::try_from(&phc).map_err(|_| HashError::Malformed("pbkdf2-sha256"))?;
            bounded("pbkdf2", "i", params.rounds.into(), MAX_PBKDF2_ITERATIONS.into())?;
            if phc.salt.is_none() || phc.hash.is_none() {
                return Err(HashError::Malformed("pbkdf2-sha256"));
            }
            Ok(Scheme::Pbkdf2Sha256)
        }
        "scrypt" => {
            let params = scrypt::Params::try_from(&phc).map_err(|_| HashError::Malformed("scrypt"))?;
            let (log_n, r, p) = (params.log_n(), u64::from(params.r()), u64::from(params.p()));
            bounded("scrypt", "ln", log_n.into(), MAX_SCRYPT_LOG_N.into())?;
            bounded("scrypt", "r", r, MAX_SCRYPT_R.into())?;
            bounded("scrypt", "p", p, MAX_SCRYPT_P.into())?;
            let n = 1u64 << log_n;
            bounded("scrypt", "128·r·(N+p)", 128 * r * (n + p), MAX_SCRYPT_MEMORY)?;
            bounded("scrypt", "128·r·N·p", 128 * r * n * p, MAX_SCRYPT_WORK)?;
            if phc.salt.is_none() || phc.hash.is_none() {
                return Err(HashError::Malformed("scrypt"));
            }
            Ok(Scheme::Scrypt)
        }
        _ => Err(HashError::Unknown),
    }
}

/// argon2's parameters within their bounds (m, t, p and m·t), or the first beyond.
pub fn argon2_within_bounds(params: &argon2::Params) -> Result<(), HashError> {
    let (m, t, p) = (params.m_cost(), params.t_cost(), params.p_cost());
    bounded("argon2", "m", m.into(), MAX_ARGON2_MEMORY_KIB.into())?;
    bounded("argon2", "t", t.into(), MAX_ARGON2_PASSES.into())?;
    bounded("argon2", "p", p.into(), MAX_ARGON2_LANES.into())?;
    bounded("argon2", "m·t", u64::from(m) * u64::from(t), MAX_ARGON2_WORK_KIB)
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
            ("$2b$31$abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyza", costly("bcrypt", "cost", 31, 16)),
            ("pbkdf2_sha256$abc$salt$AAAA", HashError::Malformed("Django pbkdf2_sha256")),
            ("pbkdf2_sha256$100$salt$AAAA", HashError::Malformed("Django pbkdf2_sha256")),
            ("pbkdf2_sha256$100", HashError::Malformed("Django pbkdf2_sha256")),
            (
                "pbkdf2_sha256$99000000$salt$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                costly("pbkdf2", "iterations", 99_000_000, 5_000_000),
            ),
            (
                "$pbkdf2-sha256$i=4294967295,l=32$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
                costly("pbkdf2", "i", 4_294_967_295, 5_000_000),
            ),
            (
                "$scrypt$ln=22,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
                costly("scrypt", "ln", 22, 20),
            ),
        ];
        for (hash, expected) in cases {
            assert_eq!(scheme_of(hash), Err(expected), "{hash}");
            assert!(!verify_any("anything at all", hash, &mut VerifyMemory::default()));
        }
    }

    fn costly(scheme: &'static str, parameter: &'static str, value: u64, max: u64) -> HashError {
        HashError::TooCostly { scheme, parameter, value, max }
    }

    /// Cost bombs: each parameter of each scheme beyond its bound, alone or with the
    /// others (the review's scrypt p = 2³⁰ − 1 asked for 128 GiB, its argon2 t = 2³² − 1
    /// for hours of a core), refused by name; the same hashes never verify, quickly.
    #[test]
    fn every_cost_parameter_is_bounded() {
        let tail = "$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        let cases = [
            ("$scrypt$ln=1,r=1,p=1073741823", costly("scrypt", "p", 1_073_741_823, 16)),
            ("$scrypt$ln=14,r=33,p=1", costly("scrypt", "r", 33, 32)),
            ("$scrypt$ln=21,r=8,p=1", costly("scrypt", "ln", 21, 20)),
            // Each alone within its bound, their memory not: 128 · 32 · (2²⁰ + 1).
            ("$scrypt$ln=20,r=32,p=1", costly("scrypt", "128·r·(N+p)", 128 * 32 * ((1 << 20) + 1), 256 << 20)),
            // Memory within bounds (16 MiB), the work not: 16 lanes of 128 MiB mixing.
            ("$scrypt$ln=17,r=8,p=16", costly("scrypt", "128·r·N·p", 128 * 8 * (1 << 17) * 16, 1 << 30)),
            ("$argon2id$v=19$m=8,t=4294967295,p=1", costly("argon2", "t", 4_294_967_295, 64)),
            ("$argon2id$v=19$m=1048576,t=1,p=1", costly("argon2", "m", 1_048_576, 262_144)),
            ("$argon2i$v=19$m=1024,t=1,p=17", costly("argon2", "p", 17, 16)),
            ("$argon2id$v=19$m=262144,t=5,p=1", costly("argon2", "m·t", 262_144 * 5, 1_048_576)),
        ];
        for (params, expected) in cases {
            let hash = format!("{params}{tail}");
            assert_eq!(scheme_of(&hash), Err(expected), "{hash}");
            let started = std::time::Instant::now();
            assert!(!verify_any("anything at all", &hash, &mut VerifyMemory::default()));
            assert!(started.elapsed() < std::time::Duration::from_millis(50), "{hash} was refused without work");
        }
        // At the bounds, accepted.
        for params in ["$scrypt$ln=17,r=8,p=1", "$scrypt$ln=14,r=8,p=16", "$argon2id$v=19$m=262144,t=4,p=1"] {
            let hash = format!("{params}{tail}");
            assert!(scheme_of(&hash).is_ok(), "{hash}");
        }
        assert_eq!(
            costly("argon2", "t", 4_294_967_295, 64).to_string(),
            "the argon2 hash's t=4294967295 is beyond what khoa verifies (at most 64)"
        );
    }

    /// What verifying at each scheme's maximum costs on this machine, for the table in
    /// docs/security.md: `cargo test --release -p khoa-core maxima -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn maxima_cost() {
        use password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let argon2 = |m, t, p| {
            argon2::Argon2::new(
                argon2::Algorithm::Argon2id,
                argon2::Version::V0x13,
                argon2::Params::new(m, t, p, None).unwrap(),
            )
            .hash_password(PASSWORD.as_bytes(), &salt)
            .unwrap()
            .to_string()
        };
        let scrypt = |ln, r, p| {
            scrypt::Scrypt
                .hash_password_customized(
                    PASSWORD.as_bytes(),
                    None,
                    None,
                    scrypt::Params::new(ln, r, p, 32).unwrap(),
                    &salt,
                )
                .unwrap()
                .to_string()
        };
        let mut django_digest = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(PASSWORD.as_bytes(), b"seasalt", MAX_PBKDF2_ITERATIONS, &mut django_digest);
        let hashes = [
            ("argon2id m=256 MiB, t=4 (m·t at its bound)", argon2(262_144, 4, 1)),
            ("argon2id m=16 MiB, t=64, p=16 (m·t at its bound)", argon2(16_384, 64, 16)),
            ("scrypt ln=17, r=8, p=1 (memory 128 MiB)", scrypt(17, 8, 1)),
            ("scrypt ln=14, r=8, p=16 (16 lanes of 16 MiB)", scrypt(14, 8, 16)),
            ("scrypt ln=15, r=32, p=8 (work at its bound)", scrypt(15, 32, 8)),
            ("bcrypt cost 16", bcrypt::hash(PASSWORD, MAX_BCRYPT_COST).unwrap()),
            (
                "pbkdf2-sha256 5,000,000 iterations",
                format!("pbkdf2_sha256${MAX_PBKDF2_ITERATIONS}$seasalt${}", STANDARD.encode(django_digest)),
            ),
        ];
        let mut memory = VerifyMemory::default();
        for (name, hash) in hashes {
            assert!(scheme_of(&hash).is_ok(), "{name}");
            let started = std::time::Instant::now();
            assert!(verify_any(PASSWORD, &hash, &mut memory), "{name}");
            println!("{name}: {:.2} s", started.elapsed().as_secs_f64());
        }
    }
}
