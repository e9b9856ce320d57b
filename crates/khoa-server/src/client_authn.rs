//! Client authentication for the token, revocation and introspection endpoints:
//! the form (duplicates refused), then `khoa_core::client_auth`.

use crate::error::TokenError;
use crate::grants::Form;
use crate::routes::form_pairs;
use crate::state::AppState;
use axum::http::{header, HeaderMap};
use khoa_core::client::Client;
use khoa_core::client_auth;
use khoa_core::token_error::TokenEndpointError;
use std::collections::HashMap;
use std::sync::Arc;

/// The form of an `application/x-www-form-urlencoded` body, refusing repeated
/// parameters (RFC 6749 §3.2).
pub fn read_form(headers: &HeaderMap, body: &[u8]) -> Result<Form, TokenEndpointError> {
    let form_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    });
    if !form_type {
        return Err(TokenEndpointError::InvalidRequest("the body must be application/x-www-form-urlencoded"));
    }
    let mut form = HashMap::new();
    for (k, v) in form_pairs(body) {
        if form.insert(k, v).is_some() {
            return Err(TokenEndpointError::InvalidRequest("a parameter appears more than once"));
        }
    }
    Ok(form)
}

/// The authenticated client.
pub async fn authenticate(state: &AppState, headers: &HeaderMap, form: &Form) -> Result<Arc<Client>, TokenError> {
    let field = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let credentials = client_auth::parse(authorization, field("client_id"), field("client_secret"))?;
    let client = state.clients.get(state.store.as_ref(), credentials.client_id()).await?;
    if let Err(e) = client_auth::verify(&credentials, client.as_deref()) {
        state.metrics.client_auth_failures.inc();
        return Err(e.into());
    }
    client.ok_or_else(|| TokenEndpointError::invalid_client("client authentication failed", false).into())
}
