//! What khoa's tokens say: JWT access tokens (RFC 9068), ID tokens (OIDC Core §2),
//! `at_hash` (§3.1.3.6) and userinfo claims by scope (§5.4).

use crate::jose::SigningAlgorithm;
use crate::scope::ScopeSet;
use crate::user::User;
use crate::UnixTime;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// RFC 9068 §2.1: the `typ` header of JWT access tokens.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// RFC 9068 §2.2 claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    /// The user's subject; for client_credentials, the client_id (RFC 9068 §2.2).
    pub sub: String,
    /// Without a resource indicator: the client the token was issued to.
    pub aud: String,
    pub client_id: String,
    pub exp: UnixTime,
    pub iat: UnixTime,
    pub jti: String,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub auth_time: Option<UnixTime>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sid: Option<String>,
}

/// OIDC Core §2 ID token claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub azp: String,
    pub exp: UnixTime,
    pub iat: UnixTime,
    pub auth_time: UnixTime,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nonce: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub at_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sid: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub amr: Vec<String>,
}

/// OIDC Core §3.1.3.6: base64url of the left half of the hash of the access token,
/// with the hash of the ID token's algorithm (SHA-256 for RS256 and ES256; SHA-512 for
/// EdDSA with Ed25519, as its signature hash).
pub fn at_hash(alg: SigningAlgorithm, access_token: &str) -> String {
    use aws_lc_rs::digest::{digest, SHA256, SHA512};
    let d = match alg {
        SigningAlgorithm::RS256 | SigningAlgorithm::ES256 => digest(&SHA256, access_token.as_bytes()),
        SigningAlgorithm::EdDSA => digest(&SHA512, access_token.as_bytes()),
    };
    let bytes = d.as_ref();
    URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2])
}

/// The userinfo response (OIDC Core §5.3.2): `sub` and the claims of the granted
/// scopes; claims khoa does not know are left out, not sent as null.
pub fn userinfo_claims(user: &User, scope: &ScopeSet) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("sub".into(), user.subject().into());
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    };
    if scope.contains("profile") {
        put("name", user.name.clone().map(Value::from));
        put("preferred_username", Some(user.username.clone().into()));
        put("picture", user.picture.clone().map(Value::from));
        put("updated_at", Some(user.updated_at.into()));
    }
    if scope.contains("email") && user.email.is_some() {
        put("email", user.email.clone().map(Value::from));
        put("email_verified", Some(user.email_verified.into()));
    }
    if scope.contains("phone") && user.phone_number.is_some() {
        put("phone_number", user.phone_number.clone().map(Value::from));
        put("phone_number_verified", Some(user.phone_number_verified.into()));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_of_the_oidc_example() {
        // OIDC Core Appendix A.3: access token and its at_hash (RS256).
        assert_eq!(
            at_hash(SigningAlgorithm::RS256, "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        assert_eq!(at_hash(SigningAlgorithm::EdDSA, "x").len(), 43);
    }

    #[test]
    fn claims_follow_scope() {
        let user = User {
            id: 7,
            username: "sv01".into(),
            password_hash: String::new(),
            email: Some("sv01@example.vn".into()),
            email_verified: true,
            name: Some("Nguyễn Văn A".into()),
            phone_number: Some("+84976535298".into()),
            phone_number_verified: false,
            picture: None,
            created_at: 1,
            updated_at: 2,
        };
        let only_openid = userinfo_claims(&user, &ScopeSet::parse("openid").unwrap());
        assert_eq!(Value::Object(only_openid), serde_json::json!({"sub": "7"}));
        let all = userinfo_claims(&user, &ScopeSet::parse("openid profile email phone").unwrap());
        assert_eq!(
            Value::Object(all),
            serde_json::json!({"sub": "7", "name": "Nguyễn Văn A", "preferred_username": "sv01", "updated_at": 2,
                               "email": "sv01@example.vn", "email_verified": true,
                               "phone_number": "+84976535298", "phone_number_verified": false})
        );
    }
}
