//! OpenID Connect Discovery 1.0 §3 provider metadata.
//!
//! Only what khoa implements is advertised; endpoints appear here as they land.

use crate::jose::SigningAlgorithm;
use crate::scope::STANDARD_SCOPES;
use serde::Serialize;

/// Paths of khoa's native endpoints (PRODUCT.md).
pub mod paths {
    pub const DISCOVERY: &str = "/.well-known/openid-configuration";
    pub const JWKS: &str = "/.well-known/jwks.json";
}

/// OIDC Core §5.1 claims khoa holds for a user.
pub const CLAIMS_SUPPORTED: &[&str] = &[
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "name",
    "preferred_username",
    "picture",
    "updated_at",
    "email",
    "email_verified",
    "phone_number",
    "phone_number_verified",
];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub jwks_uri: String,
    pub subject_types_supported: Vec<&'static str>,
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
    pub scopes_supported: Vec<&'static str>,
    pub claims_supported: Vec<&'static str>,
}

impl ProviderMetadata {
    /// `issuer` is used exactly as configured (Discovery §4.3: it must be identical to
    /// the issuer the relying party used); endpoint URLs are the issuer plus a path.
    /// `algorithms` are the configured signing algorithms; RS256 is listed first
    /// (OIDC Core §3.1.3.7: RS256 is the default a client may assume).
    pub fn new(issuer: &str, algorithms: &[SigningAlgorithm]) -> Self {
        let base = issuer.trim_end_matches('/');
        let mut algs: Vec<SigningAlgorithm> = algorithms.to_vec();
        algs.sort();
        algs.dedup();
        Self {
            issuer: issuer.to_string(),
            jwks_uri: format!("{base}{}", paths::JWKS),
            subject_types_supported: vec!["public"],
            id_token_signing_alg_values_supported: algs.iter().map(|a| a.as_str()).collect(),
            scopes_supported: STANDARD_SCOPES.to_vec(),
            claims_supported: CLAIMS_SUPPORTED.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SigningAlgorithm::*;

    #[test]
    fn rs256_first_and_exact_issuer() {
        let m = ProviderMetadata::new("https://sso.example.vn/", &[EdDSA, RS256, ES256]);
        assert_eq!(m.issuer, "https://sso.example.vn/");
        assert_eq!(m.jwks_uri, "https://sso.example.vn/.well-known/jwks.json");
        assert_eq!(m.id_token_signing_alg_values_supported, ["RS256", "ES256", "EdDSA"]);
        assert!(m.scopes_supported.contains(&"openid"));
    }
}
