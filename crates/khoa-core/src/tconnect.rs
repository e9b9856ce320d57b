//! TCONNECT partner payloads (seed 004): `data` is the lowercase hex of
//! `IV (16 random bytes) ‖ AES-256-CBC(key, IV, PKCS#7(JSON))`.
//!
//! Every way a payload can be wrong (hex, length, padding, UTF-8, JSON, shape) is the
//! one [`PayloadError`], so the server's answer can never tell a padding failure from
//! any other: no padding oracle.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use serde::de::DeserializeOwned;

type Encryptor = cbc::Encryptor<aes::Aes256>;
type Decryptor = cbc::Decryptor<aes::Aes256>;

/// Longest accepted `data` (hex characters).
pub const MAX_PAYLOAD_HEX: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the encrypted payload could not be read")]
pub struct PayloadError;

/// A partner's 256-bit key.
pub struct PartnerKey([u8; 32]);

impl PartnerKey {
    pub fn generate() -> Self {
        Self(crate::random::random_bytes::<32>())
    }

    /// 64 hexadecimal characters.
    pub fn from_hex(hex_key: &str) -> Option<Self> {
        let bytes = hex::decode(hex_key.trim()).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Encrypts `plaintext` with a fresh random IV; lowercase hex.
    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        let iv = crate::random::random_bytes::<16>();
        let ciphertext = Encryptor::new(&self.0.into(), &iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plaintext);
        let mut out = iv.to_vec();
        out.extend_from_slice(&ciphertext);
        hex::encode(out)
    }

    /// Decrypts and parses `data` as `T`.
    pub fn decrypt_json<T: DeserializeOwned>(&self, data: &str) -> Result<T, PayloadError> {
        if data.len() > MAX_PAYLOAD_HEX {
            return Err(PayloadError);
        }
        let bytes = hex::decode(data).map_err(|_| PayloadError)?;
        // At least the IV and one block, whole blocks only.
        if bytes.len() < 32 || bytes.len() % 16 != 0 {
            return Err(PayloadError);
        }
        let (iv, ciphertext) = bytes.split_at(16);
        let iv: [u8; 16] = iv.try_into().map_err(|_| PayloadError)?;
        let plaintext = Decryptor::new(&self.0.into(), &iv.into())
            .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
            .map_err(|_| PayloadError)?;
        serde_json::from_slice(&plaintext).map_err(|_| PayloadError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn round_trip_fresh_iv_lowercase_hex() {
        let key = PartnerKey::generate();
        let a = key.encrypt(br#"{"refresh_token":"x"}"#);
        let b = key.encrypt(br#"{"refresh_token":"x"}"#);
        assert_ne!(a, b, "a fresh IV each time");
        assert!(a.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_eq!(key.decrypt_json::<Value>(&a).unwrap(), json!({"refresh_token": "x"}));
        assert_eq!(
            PartnerKey::from_hex(&key.to_hex()).unwrap().decrypt_json::<Value>(&b).unwrap()["refresh_token"],
            "x"
        );
    }

    #[test]
    fn decrypts_what_openssl_encrypts() {
        // printf '{"refresh_token":"x"}' | openssl enc -aes-256-cbc \
        //   -K 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f \
        //   -iv 000102030405060708090a0b0c0d0e0f | xxd -p
        let key = PartnerKey::from_hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f").unwrap();
        let data = "000102030405060708090a0b0c0d0e0f4955d94065e344c20832007f056c7333b6f794cad7dd4b6234d68b2a43f0bb63";
        assert_eq!(key.decrypt_json::<Value>(data).unwrap(), json!({"refresh_token": "x"}));
        assert_eq!(
            key.decrypt_json::<Value>(&data.to_uppercase()).unwrap(),
            json!({"refresh_token": "x"}),
            "any hex case"
        );
    }

    #[test]
    fn every_failure_is_the_same_error() {
        let key = PartnerKey::generate();
        let good = key.encrypt(br#"{"refresh_token":"x"}"#);
        let other = PartnerKey::generate();
        let not_json = key.encrypt(b"not json");
        let mut cases = vec![
            String::new(),
            "zz".repeat(32),
            good[..good.len() - 2].to_string(),
            good[..32].to_string(),
            not_json,
            "a".repeat(MAX_PAYLOAD_HEX + 2),
        ];
        // Every single-bit flip in the last ciphertext block (padding) and in the IV.
        let bytes = hex::decode(&good).unwrap();
        for i in (0..16).chain(bytes.len() - 16..bytes.len()) {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[i] ^= 1 << bit;
                cases.push(hex::encode(flipped));
            }
        }
        for case in &cases {
            match key.decrypt_json::<std::collections::HashMap<String, String>>(case) {
                Err(PayloadError) => {}
                // A flip in the IV may still decrypt to valid JSON of the right shape.
                Ok(map) => assert_ne!(map.get("refresh_token").map(String::as_str), Some("x"), "{case}"),
            }
        }
        assert_eq!(other.decrypt_json::<Value>(&good), Err(PayloadError), "another partner's key");
    }
}
