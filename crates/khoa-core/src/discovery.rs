//! OpenID Connect Discovery 1.0 §3 provider metadata.
//!
//! Only what khoa implements is advertised; endpoints appear here as they land.

use crate::authn::Level;
use crate::jose::SigningAlgorithm;
use crate::scope::STANDARD_SCOPES;
use crate::tokens::AttributeClaims;
use serde::Serialize;

/// Paths of khoa's native endpoints (PRODUCT.md).
pub mod paths {
    pub const DISCOVERY: &str = "/.well-known/openid-configuration";
    pub const JWKS: &str = "/.well-known/jwks.json";
    pub const AUTHORIZATION: &str = "/oauth2/auth";
    pub const TOKEN: &str = "/oauth2/token";
    pub const USERINFO: &str = "/userinfo";
    pub const REVOCATION: &str = "/oauth2/revoke";
    pub const INTROSPECTION: &str = "/oauth2/introspect";
    pub const END_SESSION: &str = "/oauth2/sessions/logout";
}

/// OIDC Core §5.1 claims khoa holds for a user.
pub const CLAIMS_SUPPORTED: &[&str] = &[
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "acr",
    "amr",
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
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: String,
    pub jwks_uri: String,
    pub revocation_endpoint: String,
    pub introspection_endpoint: String,
    pub end_session_endpoint: String,
    pub frontchannel_logout_supported: bool,
    pub frontchannel_logout_session_supported: bool,
    pub backchannel_logout_supported: bool,
    pub backchannel_logout_session_supported: bool,
    pub response_types_supported: Vec<&'static str>,
    pub response_modes_supported: Vec<&'static str>,
    pub grant_types_supported: Vec<&'static str>,
    pub code_challenge_methods_supported: Vec<&'static str>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    /// RFC 9207.
    pub authorization_response_iss_parameter_supported: bool,
    pub request_parameter_supported: bool,
    /// Discovery §3 defaults this to true, so it is stated.
    pub request_uri_parameter_supported: bool,
    pub claims_parameter_supported: bool,
    /// The `acr` values khoa reaches (`crate::authn::Level`), weakest first.
    pub acr_values_supported: Vec<&'static str>,
    pub prompt_values_supported: Vec<&'static str>,
    pub ui_locales_supported: Vec<&'static str>,
    pub subject_types_supported: Vec<&'static str>,
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
    /// The standard scopes and the organisation's own ([`AttributeClaims`]).
    pub scopes_supported: Vec<String>,
    pub claims_supported: Vec<String>,
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
            authorization_endpoint: format!("{base}{}", paths::AUTHORIZATION),
            token_endpoint: format!("{base}{}", paths::TOKEN),
            userinfo_endpoint: format!("{base}{}", paths::USERINFO),
            jwks_uri: format!("{base}{}", paths::JWKS),
            revocation_endpoint: format!("{base}{}", paths::REVOCATION),
            introspection_endpoint: format!("{base}{}", paths::INTROSPECTION),
            end_session_endpoint: format!("{base}{}", paths::END_SESSION),
            frontchannel_logout_supported: true,
            frontchannel_logout_session_supported: true,
            backchannel_logout_supported: true,
            backchannel_logout_session_supported: true,
            response_types_supported: vec!["code"],
            response_modes_supported: crate::authorize::ResponseMode::SUPPORTED.to_vec(),
            grant_types_supported: vec!["authorization_code", "refresh_token", "client_credentials"],
            code_challenge_methods_supported: vec!["S256"],
            token_endpoint_auth_methods_supported: vec!["client_secret_basic", "client_secret_post", "none"],
            revocation_endpoint_auth_methods_supported: vec!["client_secret_basic", "client_secret_post", "none"],
            introspection_endpoint_auth_methods_supported: vec!["client_secret_basic", "client_secret_post"],
            authorization_response_iss_parameter_supported: true,
            request_parameter_supported: false,
            request_uri_parameter_supported: false,
            claims_parameter_supported: false,
            acr_values_supported: Self::acr_values(false),
            prompt_values_supported: vec!["none", "login", "consent", "select_account"],
            ui_locales_supported: vec!["vi", "en"],
            subject_types_supported: vec!["public"],
            id_token_signing_alg_values_supported: algs.iter().map(|a| a.as_str()).collect(),
            scopes_supported: STANDARD_SCOPES.iter().map(|s| s.to_string()).collect(),
            claims_supported: CLAIMS_SUPPORTED.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn acr_values(passkeys: bool) -> Vec<&'static str> {
        let reachable = |l: &Level| passkeys || *l != Level::PhishingResistant;
        Level::ALL.iter().filter(|l| reachable(l)).map(|l| l.acr()).collect()
    }

    /// With passkeys on offer, `phr` can be reached and is advertised.
    pub fn with_passkeys(mut self, passkeys: bool) -> Self {
        self.acr_values_supported = Self::acr_values(passkeys);
        self
    }

    /// Advertises the organisation's scopes and the attribute claims they release.
    pub fn with_attribute_claims(mut self, attributes: &AttributeClaims) -> Self {
        self.scopes_supported.extend(attributes.scopes().map(str::to_string));
        self.claims_supported.extend(attributes.claims().into_iter().map(str::to_string));
        self
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
        assert!(m.scopes_supported.iter().any(|s| s == "openid"));
        assert!(m.claims_supported.iter().any(|c| c == "amr") && m.claims_supported.iter().any(|c| c == "acr"));
        let multi = "http://schemas.openid.net/pape/policies/2007/06/multi-factor";
        assert_eq!(m.acr_values_supported, ["urn:khoa:acr:single-factor", multi]);
        let m = m.with_passkeys(true);
        assert_eq!(m.acr_values_supported, ["urn:khoa:acr:single-factor", multi, "phr"]);
        let student = AttributeClaims::new([("student".to_string(), vec!["student_id".to_string()])]).unwrap();
        let m = m.with_attribute_claims(&student);
        assert_eq!(m.scopes_supported.last().map(String::as_str), Some("student"));
        assert_eq!(m.claims_supported.last().map(String::as_str), Some("student_id"));
    }
}
