use serde::{Deserialize, Serialize};

/// A public JSON Web Key. Only public members exist in this type, so a private member
/// can never be published by mistake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub alg: String,
    pub kid: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub crv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub e: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub y: Option<String>,
}

/// RFC 7517 §5.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

impl Jwk {
    /// RFC 7638 §3: the SHA-256 thumbprint over the required members in lexicographic
    /// order, base64url. Used as `kid`, so distinct keys get distinct identifiers.
    pub fn thumbprint(&self) -> String {
        use base64::Engine;
        let canonical = match self.kty.as_str() {
            "RSA" => serde_json::json!({"e": self.e, "kty": self.kty, "n": self.n}),
            "EC" => serde_json::json!({"crv": self.crv, "kty": self.kty, "x": self.x, "y": self.y}),
            _ => serde_json::json!({"crv": self.crv, "kty": self.kty, "x": self.x}),
        };
        // serde_json writes object keys in sorted order (BTreeMap) and no whitespace.
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.to_string().as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1 example.
    #[test]
    fn rfc7638_example_thumbprint() {
        let jwk = Jwk {
            kty: "RSA".into(),
            use_: "sig".into(),
            alg: "RS256".into(),
            kid: String::new(),
            crv: None,
            n: Some("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into()),
            e: Some("AQAB".into()),
            x: None,
            y: None,
        };
        assert_eq!(jwk.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }
}
