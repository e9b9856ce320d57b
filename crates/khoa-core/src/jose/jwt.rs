//! Compact JWS (RFC 7515 §7.1) JSON Web Tokens (RFC 7519) signed by khoa's own keys.
//!
//! Verification is deliberately narrow: the token must name one of our keys by `kid`
//! and carry exactly that key's algorithm, so `alg: none`, HMAC with a public key as
//! secret, and algorithm substitution are all refused before any cryptography runs.

use super::{KeyError, SigningKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Longest token accepted for parsing.
pub const MAX_JWT_LEN: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwsHeader {
    pub alg: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub typ: Option<String>,
    /// RFC 7515 §4.1.11: extensions that must be understood; khoa understands none.
    #[serde(skip_serializing, default)]
    pub crit: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("the token is longer than {MAX_JWT_LEN} bytes")]
    TooLong,
    #[error("the token is not three base64url segments")]
    Malformed,
    #[error("the token header or claims are not a JSON object")]
    Json,
    #[error("the token names no key (kid) or a key khoa does not have")]
    UnknownKey,
    #[error("the token's algorithm {0:?} is not the algorithm of its key")]
    Algorithm(String),
    #[error("the token carries critical header extensions")]
    Critical,
    #[error("the token's signature is invalid")]
    Signature,
    #[error("{0}")]
    Key(#[from] KeyError),
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs `claims` with `key`: header `{"alg", "kid", "typ"}`.
pub fn encode<C: Serialize>(key: &SigningKey, typ: Option<&str>, claims: &C) -> Result<String, KeyError> {
    let header = JwsHeader {
        alg: key.alg().as_str().to_string(),
        kid: Some(key.kid().to_string()),
        typ: typ.map(str::to_string),
        crit: None,
    };
    // Serialising a header struct and a claims value cannot fail for our types; an
    // error still surfaces as a signing error rather than a panic.
    let header = serde_json::to_vec(&header).map_err(|_| KeyError::Signing)?;
    let claims = serde_json::to_vec(claims).map_err(|_| KeyError::Signing)?;
    let signing_input = format!("{}.{}", b64(&header), b64(&claims));
    let signature = key.sign(signing_input.as_bytes())?;
    Ok(format!("{signing_input}.{}", b64(&signature)))
}

/// A token split and decoded, not yet verified.
#[derive(Debug)]
pub struct UnverifiedJwt<'a> {
    pub header: JwsHeader,
    signing_input: &'a str,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

fn decode_segment(s: &str) -> Result<Vec<u8>, JwtError> {
    // Strict base64url without padding (RFC 7515 §2).
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(JwtError::Malformed);
    }
    URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)
}

/// Splits and decodes a compact JWS without trusting anything in it.
pub fn parse(token: &str) -> Result<UnverifiedJwt<'_>, JwtError> {
    if token.len() > MAX_JWT_LEN {
        return Err(JwtError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed);
    };
    let header: JwsHeader = serde_json::from_slice(&decode_segment(h)?).map_err(|_| JwtError::Json)?;
    if header.crit.is_some() {
        return Err(JwtError::Critical);
    }
    let payload = decode_segment(p)?;
    let signature = decode_segment(s)?;
    Ok(UnverifiedJwt { header, signing_input: &token[..h.len() + 1 + p.len()], payload, signature })
}

impl UnverifiedJwt<'_> {
    /// The `kid` the token names.
    pub fn kid(&self) -> Option<&str> {
        self.header.kid.as_deref()
    }

    /// Verifies the signature with `key` (found by the caller from [`Self::kid`]) and
    /// returns the claims. Claims such as `exp`, `iss` and `aud` are the caller's to
    /// check.
    pub fn verify<C: DeserializeOwned>(self, key: &SigningKey) -> Result<C, JwtError> {
        if self.header.kid.as_deref() != Some(key.kid()) {
            return Err(JwtError::UnknownKey);
        }
        if self.header.alg != key.alg().as_str() {
            return Err(JwtError::Algorithm(self.header.alg));
        }
        if !key.verify(self.signing_input.as_bytes(), &self.signature) {
            return Err(JwtError::Signature);
        }
        let value: serde_json::Value = serde_json::from_slice(&self.payload).map_err(|_| JwtError::Json)?;
        if !value.is_object() {
            return Err(JwtError::Json);
        }
        serde_json::from_value(value).map_err(|_| JwtError::Json)
    }
}

/// Parses `token` and verifies it with the key it names, looked up by `find`.
pub fn decode<C: DeserializeOwned, K: std::ops::Deref<Target = SigningKey>>(
    token: &str,
    find: impl FnOnce(&str) -> Option<K>,
) -> Result<(JwsHeader, C), JwtError> {
    let jwt = parse(token)?;
    let key = jwt.kid().and_then(find).ok_or(JwtError::UnknownKey)?;
    let header = jwt.header.clone();
    Ok((header, jwt.verify(&key)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::SigningAlgorithm;
    use serde_json::{json, Value};

    fn forge(header: Value, claims: Value, sig: &[u8]) -> String {
        format!("{}.{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()), b64(sig))
    }

    #[test]
    fn round_trip_for_every_algorithm() {
        for alg in SigningAlgorithm::ALL {
            let key = SigningKey::generate(alg).unwrap();
            let token = encode(&key, Some("at+jwt"), &json!({"sub": "1", "n": 2})).unwrap();
            let (header, claims): (JwsHeader, Value) =
                decode(&token, |kid| (kid == key.kid()).then_some(&key)).unwrap();
            assert_eq!(header.alg, alg.as_str());
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
            assert_eq!(claims, json!({"sub": "1", "n": 2}));
        }
    }

    #[test]
    fn attacks_are_refused() {
        let key = SigningKey::generate(SigningAlgorithm::RS256).unwrap();
        let find = |kid: &str| (kid == key.kid()).then_some(&key);
        let token = encode(&key, None, &json!({"sub": "1"})).unwrap();
        let parts: Vec<&str> = token.split('.').collect();

        // alg=none, with and without a signature.
        let none = forge(json!({"alg": "none", "kid": key.kid()}), json!({"sub": "1"}), b"");
        assert_eq!(decode::<Value, _>(&none, find).unwrap_err(), JwtError::Malformed);
        let none = forge(json!({"alg": "none", "kid": key.kid()}), json!({"sub": "1"}), b"x");
        assert_eq!(decode::<Value, _>(&none, find).unwrap_err(), JwtError::Algorithm("none".into()));
        // HS256 "signed" with the public key, algorithm substitution.
        let hs = forge(json!({"alg": "HS256", "kid": key.kid()}), json!({"sub": "1"}), b"mac");
        assert_eq!(decode::<Value, _>(&hs, find).unwrap_err(), JwtError::Algorithm("HS256".into()));
        // Claims changed after signing.
        let tampered = format!("{}.{}.{}", parts[0], b64(br#"{"sub":"2"}"#), parts[2]);
        assert_eq!(decode::<Value, _>(&tampered, find).unwrap_err(), JwtError::Signature);
        // Signed by a foreign key that claims our kid.
        let foreign = SigningKey::generate(SigningAlgorithm::RS256).unwrap();
        let sig = foreign.sign(format!("{}.{}", parts[0], parts[1]).as_bytes()).unwrap();
        let forged = format!("{}.{}.{}", parts[0], parts[1], b64(&sig));
        assert_eq!(decode::<Value, _>(&forged, find).unwrap_err(), JwtError::Signature);
        // Unknown or missing kid.
        let other = encode(&foreign, None, &json!({})).unwrap();
        assert_eq!(decode::<Value, _>(&other, find).unwrap_err(), JwtError::UnknownKey);
        let no_kid = forge(json!({"alg": "RS256"}), json!({}), b"x");
        assert_eq!(decode::<Value, _>(&no_kid, find).unwrap_err(), JwtError::UnknownKey);
        // Critical extensions.
        let crit = forge(json!({"alg": "RS256", "kid": key.kid(), "crit": ["exp"]}), json!({}), b"x");
        assert_eq!(decode::<Value, _>(&crit, find).unwrap_err(), JwtError::Critical);
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        let key = SigningKey::generate(SigningAlgorithm::ES256).unwrap();
        let find = |kid: &str| (kid == key.kid()).then_some(&key);
        for bad in [
            "",
            ".",
            "..",
            "a.b",
            "a.b.c.d",
            "a.b.c",
            "====.====.====",
            "eyJ.eyJ.sig",
            "e30.e30.",    // {} . {} . (empty signature)
            "WzFd.e30.AA", // header is an array
            "e30.e30.AA+", // '+' is not base64url
        ] {
            assert!(decode::<Value, _>(bad, find).is_err(), "{bad:?}");
        }
        let token = encode(&key, None, &json!([1, 2])).unwrap();
        assert_eq!(decode::<Value, _>(&token, find).unwrap_err(), JwtError::Json, "claims must be an object");
        assert_eq!(decode::<Value, _>(&"a".repeat(MAX_JWT_LEN + 1), find).unwrap_err(), JwtError::TooLong);
        let utf8 = "é.é.é";
        assert!(decode::<Value, _>(utf8, find).is_err());
    }
}
