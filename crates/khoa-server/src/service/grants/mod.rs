//! One handler per grant type (RFC 6749 §4), registered in [`REGISTRY`] and found
//! there by the token endpoint: a new grant (the device flow, token exchange) is a
//! module and one entry, and discovery's `grant_types_supported` is the registry.

pub mod authorization_code;
pub mod client_credentials;
pub mod refresh_token;

use crate::app::state::AppState;
use crate::http::error::TokenError;
use khoa_core::client::{Client, GrantType};
use std::future::Future;
use std::pin::Pin;

/// What a grant's handler returns.
pub type Handled<'a> = Pin<Box<dyn Future<Output = Result<TokenResponse, TokenError>> + Send + 'a>>;

/// A grant type and its handler, which answers the token request of a client already
/// authenticated and allowed that grant type.
pub struct Grant {
    pub grant_type: GrantType,
    pub handle: for<'a> fn(&'a AppState, &'a Client, &'a Form) -> Handled<'a>,
}

/// The grant types the token endpoint serves. RFC 9700 §2.4: not the resource owner
/// password grant; nor the implicit one, which has no token request.
pub const REGISTRY: &[Grant] = &[
    Grant { grant_type: GrantType::AuthorizationCode, handle: |s, c, f| Box::pin(authorization_code::handle(s, c, f)) },
    Grant { grant_type: GrantType::RefreshToken, handle: |s, c, f| Box::pin(refresh_token::handle(s, c, f)) },
    Grant { grant_type: GrantType::ClientCredentials, handle: |s, c, f| Box::pin(client_credentials::handle(s, c, f)) },
];

/// The registered grant named `grant_type`.
pub fn find(grant_type: &str) -> Option<&'static Grant> {
    REGISTRY.iter().find(|g| g.grant_type.as_str() == grant_type)
}

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

pub use crate::http::forms::{field, Form};

/// RFC 6749 §5.1.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

impl IntoResponse for TokenResponse {
    fn into_response(self) -> Response {
        let mut res = Json(self).into_response();
        no_store(res.headers_mut());
        res
    }
}

/// RFC 6749 §5.1: responses carrying tokens must not be cached.
pub fn no_store(h: &mut axum::http::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Discovery announces exactly the grant types the token endpoint serves.
    #[test]
    fn discovery_lists_the_registry() {
        let meta = khoa_core::discovery::ProviderMetadata::new("https://sso.example.vn", &[]);
        let served: Vec<&str> = REGISTRY.iter().map(|g| g.grant_type.as_str()).collect();
        assert_eq!(meta.grant_types_supported, served);
        assert!(find("password").is_none() && find("implicit").is_none() && find("").is_none());
        assert_eq!(find("refresh_token").map(|g| g.grant_type), Some(GrantType::RefreshToken));
    }
}
