use super::Jwk;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ParsedPublicKey, RsaPublicKeyComponents, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// JWS algorithms khoa signs with (RFC 7518 §3.1; EdDSA per RFC 8037).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SigningAlgorithm {
    RS256,
    ES256,
    EdDSA,
}

impl SigningAlgorithm {
    pub const ALL: [SigningAlgorithm; 3] = [Self::RS256, Self::ES256, Self::EdDSA];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlgorithm {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "RS256" => Ok(Self::RS256),
            "ES256" => Ok(Self::ES256),
            "EdDSA" => Ok(Self::EdDSA),
            other => Err(KeyError::UnknownAlgorithm(other.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("unknown signing algorithm {0:?} (supported: RS256, ES256, EdDSA)")]
    UnknownAlgorithm(String),
    #[error("key generation failed")]
    Generation,
    #[error("stored private key is not a valid {0} PKCS#8 key")]
    BadPrivateKey(SigningAlgorithm),
    #[error("signing failed")]
    Signing,
}

enum KeyPairInner {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private signing key with its public JWK.
pub struct SigningKey {
    alg: SigningAlgorithm,
    inner: KeyPairInner,
    jwk: Jwk,
    /// The public half, parsed once at load: verification then skips rebuilding the
    /// key (for RSA, its Montgomery context) on every token.
    verifier: ParsedPublicKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("alg", &self.alg).field("kid", &self.jwk.kid).finish()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    /// A new key: RSA 2048 with e = 65537, NIST P-256, or Ed25519.
    pub fn generate(alg: SigningAlgorithm) -> Result<Self, KeyError> {
        let pkcs8 = match alg {
            SigningAlgorithm::RS256 => aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .and_then(|k| k.as_der())
                .map_err(|_| KeyError::Generation)?
                .as_ref()
                .to_vec(),
            SigningAlgorithm::ES256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .and_then(|k| k.to_pkcs8v1())
                .map_err(|_| KeyError::Generation)?
                .as_ref()
                .to_vec(),
            SigningAlgorithm::EdDSA => Ed25519KeyPair::generate()
                .and_then(|k| k.to_pkcs8v1())
                .map_err(|_| KeyError::Generation)?
                .as_ref()
                .to_vec(),
        };
        Self::from_pkcs8(alg, &pkcs8)
    }

    /// Loads a PKCS#8 private key.
    pub fn from_pkcs8(alg: SigningAlgorithm, pkcs8: &[u8]) -> Result<Self, KeyError> {
        let bad = |_| KeyError::BadPrivateKey(alg);
        let (inner, mut jwk, verifier) = match alg {
            SigningAlgorithm::RS256 => {
                let kp = aws_lc_rs::rsa::KeyPair::from_pkcs8(pkcs8).map_err(bad)?;
                let public = kp.public_key();
                // RFC 7518 §6.3.1: n and e as unsigned big-endian without leading zeros.
                let n = public.modulus().big_endian_without_leading_zero().to_vec();
                let e = public.exponent().big_endian_without_leading_zero().to_vec();
                let jwk = Jwk { kty: "RSA".into(), n: Some(b64(&n)), e: Some(b64(&e)), ..Jwk::empty(alg) };
                let verifier = RsaPublicKeyComponents { n: &n, e: &e }
                    .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
                    .map_err(|_| KeyError::BadPrivateKey(alg))?;
                (KeyPairInner::Rsa(kp), jwk, verifier)
            }
            SigningAlgorithm::ES256 => {
                let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).map_err(bad)?;
                // Uncompressed SEC1 point: 0x04 ‖ x (32) ‖ y (32).
                let point = kp.public_key().as_ref();
                if point.len() != 65 || point[0] != 4 {
                    return Err(KeyError::BadPrivateKey(alg));
                }
                let jwk = Jwk {
                    kty: "EC".into(),
                    crv: Some("P-256".into()),
                    x: Some(b64(&point[1..33])),
                    y: Some(b64(&point[33..65])),
                    ..Jwk::empty(alg)
                };
                let verifier = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).map_err(bad)?;
                (KeyPairInner::Ecdsa(kp), jwk, verifier)
            }
            SigningAlgorithm::EdDSA => {
                let kp = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(bad)?;
                let jwk = Jwk {
                    kty: "OKP".into(),
                    crv: Some("Ed25519".into()),
                    x: Some(b64(kp.public_key().as_ref())),
                    ..Jwk::empty(alg)
                };
                let verifier = ParsedPublicKey::new(&ED25519, kp.public_key().as_ref()).map_err(bad)?;
                (KeyPairInner::Ed25519(kp), jwk, verifier)
            }
        };
        jwk.kid = jwk.thumbprint();
        Ok(Self { alg, inner, jwk, verifier })
    }

    /// The private key as PKCS#8 DER (to be sealed before it is stored).
    pub fn to_pkcs8(&self) -> Result<Vec<u8>, KeyError> {
        let doc = match &self.inner {
            KeyPairInner::Rsa(kp) => kp.as_der().map(|d| d.as_ref().to_vec()),
            KeyPairInner::Ecdsa(kp) => kp.to_pkcs8v1().map(|d| d.as_ref().to_vec()),
            KeyPairInner::Ed25519(kp) => kp.to_pkcs8v1().map(|d| d.as_ref().to_vec()),
        };
        doc.map_err(|_| KeyError::Generation)
    }

    pub fn alg(&self) -> SigningAlgorithm {
        self.alg
    }

    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    pub fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// JWS signature over `message` (RFC 7515 §5.1 step 5). ES256 signatures are the
    /// fixed-width `r ‖ s` form of RFC 7518 §3.4.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.inner {
            KeyPairInner::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig).map_err(|_| KeyError::Signing)?;
                Ok(sig)
            }
            KeyPairInner::Ecdsa(kp) => {
                kp.sign(&SystemRandom::new(), message).map(|s| s.as_ref().to_vec()).map_err(|_| KeyError::Signing)
            }
            KeyPairInner::Ed25519(kp) => Ok(kp.sign(message).as_ref().to_vec()),
        }
    }

    /// Checks a JWS signature made with this key's algorithm over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verifier.verify_sig(message, signature).is_ok()
    }
}

impl Jwk {
    fn empty(alg: SigningAlgorithm) -> Self {
        Jwk {
            kty: String::new(),
            use_: "sig".into(),
            alg: alg.as_str().into(),
            kid: String::new(),
            crv: None,
            n: None,
            e: None,
            x: None,
            y: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{UnparsedPublicKey, VerificationAlgorithm, ECDSA_P256_SHA256_FIXED, ED25519};

    /// Verification from the published JWK alone, as a relying party does it.
    fn verify(key: &SigningKey, msg: &[u8], sig: &[u8]) -> bool {
        let jwk = key.public_jwk();
        let d = |s: &Option<String>| URL_SAFE_NO_PAD.decode(s.as_deref().unwrap_or_default()).unwrap();
        match key.alg() {
            SigningAlgorithm::RS256 => aws_lc_rs::signature::RsaPublicKeyComponents { n: d(&jwk.n), e: d(&jwk.e) }
                .verify(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256, msg, sig)
                .is_ok(),
            SigningAlgorithm::ES256 => {
                let mut point = vec![4u8];
                point.extend(d(&jwk.x));
                point.extend(d(&jwk.y));
                let alg: &dyn VerificationAlgorithm = &ECDSA_P256_SHA256_FIXED;
                UnparsedPublicKey::new(alg, point).verify(msg, sig).is_ok()
            }
            SigningAlgorithm::EdDSA => UnparsedPublicKey::new(&ED25519, d(&jwk.x)).verify(msg, sig).is_ok(),
        }
    }

    #[test]
    fn every_algorithm_signs_verifiably_from_its_public_jwk() {
        for alg in SigningAlgorithm::ALL {
            let key = SigningKey::generate(alg).unwrap();
            let sig = key.sign(b"header.payload").unwrap();
            assert!(verify(&key, b"header.payload", &sig), "{alg}");
            assert!(!verify(&key, b"header.payloaD", &sig), "{alg}");
            assert!(key.verify(b"header.payload", &sig), "{alg}");
            assert!(!key.verify(b"header.payloaD", &sig), "{alg}");
            // Survives the PKCS#8 round trip used for storage, with the same kid.
            let again = SigningKey::from_pkcs8(alg, &key.to_pkcs8().unwrap()).unwrap();
            assert_eq!(again.kid(), key.kid());
            assert!(verify(&again, b"m", &key.sign(b"m").unwrap()));
        }
    }

    #[test]
    fn jwk_has_only_public_members() {
        for alg in SigningAlgorithm::ALL {
            let key = SigningKey::generate(alg).unwrap();
            let v = serde_json::to_value(key.public_jwk()).unwrap();
            let obj = v.as_object().unwrap();
            for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
                assert!(!obj.contains_key(private), "{alg} publishes {private}");
            }
            assert_eq!(obj["alg"], alg.as_str());
            assert_eq!(obj["use"], "sig");
            assert_eq!(obj["kid"], key.public_jwk().thumbprint());
        }
        let rsa = SigningKey::generate(SigningAlgorithm::RS256).unwrap();
        assert_eq!(rsa.public_jwk().e.as_deref(), Some("AQAB"));
    }

    #[test]
    fn distinct_keys_distinct_kids_and_garbage_refused() {
        let a = SigningKey::generate(SigningAlgorithm::ES256).unwrap();
        let b = SigningKey::generate(SigningAlgorithm::ES256).unwrap();
        assert_ne!(a.kid(), b.kid());
        assert_eq!(
            SigningKey::from_pkcs8(SigningAlgorithm::RS256, b"junk").unwrap_err(),
            KeyError::BadPrivateKey(SigningAlgorithm::RS256)
        );
        assert!("HS256".parse::<SigningAlgorithm>().is_err());
        assert!("none".parse::<SigningAlgorithm>().is_err());
    }
}
