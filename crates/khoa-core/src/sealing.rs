//! Encryption of private keys at rest: AES-256-GCM under the master key, with a fresh
//! random 96-bit nonce per sealing and the key's identifier as associated data (so a
//! sealed blob cannot be moved to another key row).

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};

/// Shortest accepted `KHOA_SECRET`.
pub const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealingError {
    #[error("the master secret must be at least {MIN_SECRET_LEN} characters")]
    SecretTooShort,
    #[error("the key file must hold exactly 64 hexadecimal characters")]
    BadKeyFile,
    #[error("sealed data could not be opened: wrong master key or corrupted data")]
    Open,
    #[error("sealing failed")]
    Seal,
}

/// The 256-bit key that seals private keys at rest.
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    /// Derives the key from an operator secret (`KHOA_SECRET`) with HKDF-SHA256.
    pub fn from_secret(secret: &str) -> Result<Self, SealingError> {
        if secret.chars().count() < MIN_SECRET_LEN {
            return Err(SealingError::SecretTooShort);
        }
        let prk = Salt::new(HKDF_SHA256, b"khoa master key").extract(secret.as_bytes());
        let mut out = [0u8; 32];
        prk.expand(&[b"khoa sealing v1"], HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut out))
            .map_err(|_| SealingError::Seal)?;
        Ok(Self(out))
    }

    /// Parses the contents of a generated key file (64 hex characters, whitespace
    /// around it ignored).
    pub fn from_key_file(contents: &str) -> Result<Self, SealingError> {
        let bytes = hex::decode(contents.trim()).map_err(|_| SealingError::BadKeyFile)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SealingError::BadKeyFile)?;
        Ok(Self(key))
    }

    /// A new random key and its key-file text.
    pub fn generate() -> (Self, String) {
        let key = crate::random::random_bytes::<32>();
        (Self(key), format!("{}\n", hex::encode(key)))
    }

    fn aead(&self) -> Result<RandomizedNonceKey, SealingError> {
        RandomizedNonceKey::new(&AES_256_GCM, &self.0).map_err(|_| SealingError::Seal)
    }

    /// `nonce ‖ ciphertext ‖ tag`.
    pub fn seal(&self, associated: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealingError> {
        let mut buf = plaintext.to_vec();
        let nonce =
            self.aead()?.seal_in_place_append_tag(Aad::from(associated), &mut buf).map_err(|_| SealingError::Seal)?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// [`Self::seal`] as base64url text, for what travels in cookies and forms.
    pub fn seal_text(&self, associated: &[u8], plaintext: &[u8]) -> Result<String, SealingError> {
        use base64::Engine;
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.seal(associated, plaintext)?))
    }

    /// `value` as JSON, sealed as [`Self::seal_text`]: the state that travels sealed in
    /// a cookie or a form (a sign-in in progress, an enrolment, an interaction).
    pub fn seal_json<T: serde::Serialize>(&self, associated: &[u8], value: &T) -> Result<String, SealingError> {
        let plain = serde_json::to_vec(value).map_err(|_| SealingError::Seal)?;
        self.seal_text(associated, &plain)
    }

    /// What [`Self::seal_json`] sealed with `associated`, if it is ours, unaltered and a `T`.
    pub fn open_json<T: serde::de::DeserializeOwned>(&self, associated: &[u8], sealed: &str) -> Option<T> {
        serde_json::from_slice(&self.open_text(associated, sealed).ok()?).ok()
    }

    /// Opens what [`Self::seal_text`] made.
    pub fn open_text(&self, associated: &[u8], sealed: &str) -> Result<Vec<u8>, SealingError> {
        use base64::Engine;
        let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sealed).map_err(|_| SealingError::Open)?;
        self.open(associated, &sealed)
    }

    pub fn open(&self, associated: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealingError> {
        if sealed.len() < NONCE_LEN {
            return Err(SealingError::Open);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealingError::Open)?;
        let mut buf = ciphertext.to_vec();
        let plain =
            self.aead()?.open_in_place(nonce, Aad::from(associated), &mut buf).map_err(|_| SealingError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_json_opens_only_as_it_was_sealed() {
        let (key, _) = MasterKey::generate();
        let sealed = key.seal_json(b"a", &("state", 7)).unwrap();
        assert_eq!(key.open_json::<(String, i64)>(b"a", &sealed), Some(("state".into(), 7)));
        assert_eq!(key.open_json::<(String, i64)>(b"b", &sealed), None, "other associated data");
        assert_eq!(key.open_json::<Vec<bool>>(b"a", &sealed), None, "another type");
        assert_eq!(key.open_json::<(String, i64)>(b"a", "not sealed"), None);
    }

    #[test]
    fn seal_open_and_tamper() {
        let (key, text) = MasterKey::generate();
        assert_eq!(text.trim().len(), 64);
        let sealed = key.seal(b"kid-1", b"private key").unwrap();
        assert_eq!(key.open(b"kid-1", &sealed).unwrap(), b"private key");
        // Bound to its associated data.
        assert_eq!(key.open(b"kid-2", &sealed), Err(SealingError::Open));
        // Any flipped bit is detected.
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(key.open(b"kid-1", &bad), Err(SealingError::Open));
        // Another master key cannot open it.
        let (other, _) = MasterKey::generate();
        assert_eq!(other.open(b"kid-1", &sealed), Err(SealingError::Open));
        assert_eq!(key.open(b"kid-1", &[1, 2, 3]), Err(SealingError::Open));
    }

    #[test]
    fn secret_derivation_is_stable_and_checked() {
        let a = MasterKey::from_secret("0123456789abcdef0123456789abcdef").unwrap();
        let b = MasterKey::from_secret("0123456789abcdef0123456789abcdef").unwrap();
        let sealed = a.seal(b"x", b"y").unwrap();
        assert_eq!(b.open(b"x", &sealed).unwrap(), b"y");
        assert_eq!(MasterKey::from_secret("short").unwrap_err(), SealingError::SecretTooShort);
        assert_eq!(MasterKey::from_key_file("abcd").unwrap_err(), SealingError::BadKeyFile);
        assert_eq!(MasterKey::from_key_file(&"zz".repeat(32)).unwrap_err(), SealingError::BadKeyFile);
    }
}
