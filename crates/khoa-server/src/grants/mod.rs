//! One handler per grant type (RFC 6749 §4), composed by the token endpoint.

pub mod authorization_code;
pub mod client_credentials;
pub mod refresh_token;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::collections::HashMap;

/// The token request's form (duplicates already refused).
pub type Form = HashMap<String, String>;

/// A non-empty form field.
pub fn field<'a>(form: &'a Form, name: &str) -> Option<&'a str> {
    form.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

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
