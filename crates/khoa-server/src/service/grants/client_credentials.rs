//! `grant_type=client_credentials` (RFC 6749 §4.4): confidential clients only; an access
//! token only (no ID token, no refresh token); scopes limited to the client's own.

use super::{field, Form, TokenResponse};
use crate::app::state::AppState;
use crate::http::error::TokenError;
use crate::service::issue::{self, Subject};
use khoa_core::client::Client;
use khoa_core::scope::{ScopeSet, STANDARD_SCOPES};
use khoa_core::token_error::TokenEndpointError;
use khoa_store::{AccessTokenRecord, NewAccessToken};

pub async fn handle(state: &AppState, client: &Client, form: &Form) -> Result<TokenResponse, TokenError> {
    if client.is_public() {
        return Err(TokenEndpointError::UnauthorizedClient("public clients cannot use client_credentials").into());
    }
    // The OpenID scopes speak of a user; a client acting for itself has none.
    let own: Vec<String> = client.scopes.iter().filter(|s| !STANDARD_SCOPES.contains(&s.as_str())).cloned().collect();
    let allowed: ScopeSet = own.into_iter().collect();
    let scope = match field(form, "scope") {
        None => allowed.clone(),
        Some(s) => {
            let requested = ScopeSet::parse(s)
                .map_err(|_| TokenEndpointError::InvalidScope("scope contains invalid characters"))?;
            if !requested.is_subset(&allowed) {
                return Err(TokenEndpointError::InvalidScope("the client may not request one of the scopes").into());
            }
            requested
        }
    };
    let now = state.now();
    let lifetime = issue::access_token_lifetime(state, client);
    let minted = issue::new_access_token_id(state);
    state
        .store
        .insert_access_token(&AccessTokenRecord {
            token: NewAccessToken { jti: minted.jti.clone(), issued_at: now, expires_at: now + lifetime },
            grant_id: format!("client_credentials:{}", minted.jti),
            client_id: client.client_id.clone(),
            user_id: None,
            sid: None,
            scope: scope.to_string(),
            revoked_at: None,
        })
        .await?;
    let subject = Subject { sub: client.client_id.clone(), scope: &scope, auth_time: None, sid: None, email: None };
    let access_token = issue::access_token(state, client, &subject, &minted, now)?;
    state.metrics.tokens_issued.inc();
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: lifetime,
        id_token: None,
        refresh_token: None,
        scope: scope.to_string(),
    })
}
