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
    /// The assurance the sign-in reached (OIDC Core §2; `crate::authn::Level::acr`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub acr: Option<String>,
    /// With the `email` scope (OIDC Core §5.4): the address and whether it is verified.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub email_verified: Option<bool>,
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

/// The organisation's own scopes, each releasing some of a user's attributes as claims
/// of the same name (configured as `[scopes.NAME] claims = [...]`). Every scope is a
/// scope token that is neither standard nor khoa's; every claim is an attribute name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttributeClaims(std::collections::BTreeMap<String, Vec<String>>);

/// Why a scope's claims cannot be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributeClaimsError {
    #[error("{0:?} is not a scope khoa can release attributes under: a scope token, not standard, not khoa:…")]
    Scope(String),
    #[error("scope {scope:?}: {claim:?} is not an attribute name (A-Z a-z 0-9 _ . -, up to 64, not a standard claim)")]
    Claim { scope: String, claim: String },
}

impl AttributeClaims {
    pub fn new(by_scope: impl IntoIterator<Item = (String, Vec<String>)>) -> Result<Self, AttributeClaimsError> {
        let mut map = std::collections::BTreeMap::new();
        for (scope, mut claims) in by_scope {
            let standard = crate::scope::STANDARD_SCOPES.contains(&scope.as_str()) || scope == "address";
            if !crate::scope::is_scope_token(&scope) || standard || crate::scope::is_reserved(&scope) {
                return Err(AttributeClaimsError::Scope(scope));
            }
            if let Some(claim) = claims.iter().find(|c| !crate::user::is_attribute_name(c)) {
                return Err(AttributeClaimsError::Claim { scope, claim: claim.clone() });
            }
            claims.sort();
            claims.dedup();
            map.insert(scope, claims);
        }
        Ok(Self(map))
    }

    /// The configured scopes.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The attributes one configured scope releases.
    pub fn claims_of(&self, scope: &str) -> &[String] {
        self.0.get(scope).map_or(&[], Vec::as_slice)
    }

    /// Every claim some scope releases, once each.
    pub fn claims(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.0.values().flatten().map(String::as_str).collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// The attributes of `user` that `scope` releases.
    pub fn released<'u>(&self, user: &'u User, scope: &ScopeSet) -> Vec<(&'u str, &'u str)> {
        let mut out: Vec<(&str, &str)> = self
            .0
            .iter()
            .filter(|(s, _)| scope.contains(s))
            .flat_map(|(_, claims)| claims)
            .filter_map(|c| user.attributes.get_key_value(c.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The userinfo response (OIDC Core §5.3.2): `sub` and the claims of the granted
/// scopes, the organisation's attributes among them; claims the user does not have
/// are left out, not sent as null.
pub fn userinfo_claims(user: &User, scope: &ScopeSet, attributes: &AttributeClaims) -> Map<String, Value> {
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
    for (claim, value) in attributes.released(user, scope) {
        m.insert(claim.into(), value.into());
    }
    m
}

/// What the liveness of an access token looks at: its claims, and the record the
/// database keeps of it (the authority on revocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessTokenState<'a> {
    pub claims_client_id: &'a str,
    pub claims_exp: UnixTime,
    pub record_client_id: &'a str,
    pub record_expires_at: UnixTime,
    pub revoked: bool,
}

/// The one definition of a live access token, for userinfo, introspection,
/// revocation and the dialects: unexpired by its claims and by its record at `now`,
/// not revoked, and its record names the client its claims name.
pub fn access_token_is_live(t: &AccessTokenState<'_>, now: UnixTime) -> bool {
    now < t.claims_exp && now < t.record_expires_at && !t.revoked && t.record_client_id == t.claims_client_id
}

/// Whether a client may learn about a token by introspection (RFC 7662 §2.2, §4; RFC
/// 9700 §4.14): a client its own tokens; a resource server every access token (they
/// are meant for the deployment's APIs); a refresh token only the client it was issued
/// to.
pub fn introspectable(token_client_id: &str, is_access_token: bool, client_id: &str, resource_server: bool) -> bool {
    token_client_id == client_id || (resource_server && is_access_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_an_access_token_is_live() {
        let live = AccessTokenState {
            claims_client_id: "app",
            claims_exp: 2000,
            record_client_id: "app",
            record_expires_at: 2000,
            revoked: false,
        };
        let cases = [
            ("live", live, 1999, true),
            ("at its expiry second", live, 2000, false),
            ("its record expired first", AccessTokenState { record_expires_at: 1500, ..live }, 1600, false),
            ("revoked", AccessTokenState { revoked: true, ..live }, 1000, false),
            ("a record of another client", AccessTokenState { record_client_id: "other", ..live }, 1000, false),
        ];
        for (name, t, now, expected) in cases {
            assert_eq!(access_token_is_live(&t, now), expected, "{name}");
        }
    }

    #[test]
    fn who_may_introspect_a_token() {
        let cases = [
            ("its own access token", "app", true, "app", false, true),
            ("its own refresh token", "app", false, "app", false, true),
            ("another's access token", "app", true, "other", false, false),
            ("a resource server, another's access token", "app", true, "api", true, true),
            ("a resource server, another's refresh token", "app", false, "api", true, false),
        ];
        for (name, owner, access, client, resource_server, expected) in cases {
            assert_eq!(introspectable(owner, access, client, resource_server), expected, "{name}");
        }
    }

    #[test]
    fn at_hash_of_the_oidc_example() {
        // OIDC Core Appendix A.3: access token and its at_hash (RS256).
        assert_eq!(
            at_hash(SigningAlgorithm::RS256, "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        assert_eq!(at_hash(SigningAlgorithm::EdDSA, "x").len(), 43);
    }

    /// The user of these tests, with attributes.
    fn sv01() -> User {
        User {
            id: 7,
            username: "sv01".into(),
            password_hash: None,
            email: Some("sv01@example.vn".into()),
            email_verified: true,
            name: Some("Nguyễn Văn A".into()),
            phone_number: Some("+84976535298".into()),
            phone_number_verified: false,
            picture: None,
            created_at: 1,
            updated_at: 2,
            disabled_at: None,
            attributes: [("student_id", "2180601234"), ("class", "20DTHA1"), ("staff_no", "x")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
            revision: 1,
        }
    }

    #[test]
    fn claims_follow_scope() {
        let user = sv01();
        let none = AttributeClaims::default();
        let only_openid = userinfo_claims(&user, &ScopeSet::parse("openid").unwrap(), &none);
        assert_eq!(Value::Object(only_openid), serde_json::json!({"sub": "7"}));
        let all = userinfo_claims(&user, &ScopeSet::parse("openid profile email phone").unwrap(), &none);
        assert_eq!(
            Value::Object(all),
            serde_json::json!({"sub": "7", "name": "Nguyễn Văn A", "preferred_username": "sv01", "updated_at": 2,
                               "email": "sv01@example.vn", "email_verified": true,
                               "phone_number": "+84976535298", "phone_number_verified": false})
        );
    }

    #[test]
    fn attributes_are_released_by_their_scope_only() {
        let user = User { email: None, email_verified: false, name: None, phone_number: None, ..sv01() };
        let config = |pairs: &[(&str, &[&str])]| {
            AttributeClaims::new(pairs.iter().map(|(s, c)| (s.to_string(), c.iter().map(|c| c.to_string()).collect())))
        };
        let mapping = config(&[("student", &["student_id", "class", "faculty"]), ("staff", &["staff_no"])]).unwrap();
        let cases: [(&str, serde_json::Value); 4] = [
            ("openid", serde_json::json!({"sub": "7"})),
            // `faculty` is configured but the user has none: left out, not null.
            ("openid student", serde_json::json!({"sub": "7", "student_id": "2180601234", "class": "20DTHA1"})),
            ("openid staff", serde_json::json!({"sub": "7", "staff_no": "x"})),
            (
                "openid student staff",
                serde_json::json!({"sub": "7", "student_id": "2180601234", "class": "20DTHA1", "staff_no": "x"}),
            ),
        ];
        for (scope, want) in cases {
            let got = userinfo_claims(&user, &ScopeSet::parse(scope).unwrap(), &mapping);
            assert_eq!(Value::Object(got), want, "{scope}");
        }
        assert_eq!(mapping.scopes().collect::<Vec<_>>(), ["staff", "student"]);
        assert_eq!(mapping.claims(), ["class", "faculty", "staff_no", "student_id"]);
        // What cannot be configured, by name.
        for (pairs, message) in [
            (&[("profile", &["student_id"][..])][..], "\"profile\" is not a scope"),
            (&[("khoa:x", &["a"][..])][..], "\"khoa:x\" is not a scope"),
            (&[("bad scope", &["a"][..])][..], "\"bad scope\" is not a scope"),
            (&[("student", &["email"][..])][..], "scope \"student\": \"email\" is not an attribute name"),
            (&[("student", &["a b"][..])][..], "scope \"student\": \"a b\" is not an attribute name"),
        ] {
            let e = config(pairs).unwrap_err().to_string();
            assert!(e.starts_with(message), "{e}");
        }
    }
}
