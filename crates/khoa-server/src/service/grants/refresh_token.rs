//! `grant_type=refresh_token` (RFC 6749 §6) with rotation and reuse detection
//! (RFC 9700 §4.14.2): every use returns a new refresh token; presenting a rotated one
//! revokes the family, except for honest duplicates within the grace window.

use super::{field, Form, TokenResponse};
use crate::app::state::AppState;
use crate::http::error::TokenError;
use crate::service::issue::{self, RefreshTemplate, Subject};
use khoa_core::client::Client;
use khoa_core::scope::ScopeSet;
use khoa_core::session::handle_hash;
use khoa_core::token_error::TokenEndpointError;
use khoa_store::{NewAccessToken, Rotation};

fn invalid_grant(description: &'static str) -> TokenError {
    TokenEndpointError::InvalidGrant(description).into()
}

pub async fn handle(state: &AppState, client: &Client, form: &Form) -> Result<TokenResponse, TokenError> {
    let Some(presented) = field(form, "refresh_token") else {
        return Err(TokenEndpointError::InvalidRequest("refresh_token is required").into());
    };
    rotate(state, client, presented, field(form, "scope")).await
}

pub async fn rotate(
    state: &AppState,
    client: &Client,
    presented: &str,
    requested_scope: Option<&str>,
) -> Result<TokenResponse, TokenError> {
    let now = state.now();
    let presented_hash = handle_hash(presented);
    let requested = requested_scope
        .map(ScopeSet::parse)
        .transpose()
        .map_err(|_| TokenEndpointError::InvalidScope("scope contains invalid characters"))?;
    // The presented token is read by the rotation itself (one transaction, no read
    // before it); its successor is built from it there.
    let successor = {
        let (client_id, lifetime) = (client.client_id.clone(), issue::refresh_token_lifetime(state, client));
        issue::RefreshHandle::new(state)?.successor(move |handle, current| {
            // RFC 6749 §6: the scope may be narrowed, never widened.
            let granted = ScopeSet::parse(&current.token.scope).unwrap_or_default();
            let scope = khoa_core::refresh::narrow(granted, requested.as_ref())?;
            let template = RefreshTemplate {
                family_id: &current.token.family_id,
                client_id: &client_id,
                lifetime,
                user_id: current.token.user_id,
                sid: current.token.sid.as_deref(),
                scope: &scope,
                auth_time: current.token.auth_time,
                amr: &current.token.amr,
            };
            Some(handle.row(template, now))
        })
    };
    let successor_handle = successor.handle.clone();
    let lifetime = issue::access_token_lifetime(state, client);
    let minted = issue::new_access_token_id(state);
    let access = NewAccessToken { jti: minted.jti.clone(), issued_at: now, expires_at: now + lifetime };
    let grace = state.settings.refresh_grace;
    let (current, handle, handed_scope) = match state
        .store
        .rotate_refresh_token(&presented_hash, &client.client_id, now, grace, successor.into_store(), &access)
        .await?
    {
        Rotation::Rotated { presented, successor } => {
            (presented, successor_handle, ScopeSet::parse(&successor.scope).unwrap_or_default())
        }
        Rotation::Grace { presented, successor, sealed } => {
            let handle = issue::unseal_refresh_handle(state, &successor.token.token_hash, &sealed)?;
            (presented, handle, ScopeSet::parse(&successor.token.scope).unwrap_or_default())
        }
        Rotation::Refused => {
            return Err(TokenEndpointError::InvalidScope("the requested scope exceeds the granted scope").into())
        }
        Rotation::Reused { revoked } => {
            state.metrics.refresh_reuse.inc();
            tracing::warn!(client_id = %client.client_id, revoked, "refresh token reused; family revoked");
            return Err(invalid_grant("the refresh token was already used"));
        }
        Rotation::Revoked => return Err(invalid_grant("the refresh token has been revoked")),
        Rotation::Expired => return Err(invalid_grant("the refresh token has expired")),
        Rotation::OtherClient => return Err(invalid_grant("the refresh token was issued to another client")),
        Rotation::Unknown => return Err(invalid_grant("the refresh token is invalid")),
    };
    let user = state.users.get(state.store.as_ref(), current.token.user_id).await?;
    let Some(user) = user.filter(|u| !u.is_disabled()) else {
        state.store.revoke_family(&current.token.family_id, now).await?;
        return Err(invalid_grant("the user no longer exists or is disabled"));
    };
    let subject = Subject::user(&user, &handed_scope, current.token.auth_time, current.token.sid.as_deref());
    let access_token = issue::access_token(state, client, &subject, &minted, now)?;
    // OIDC Core §12.2: a new ID token with the same iss, sub, aud, azp, auth_time; no nonce.
    let id_token = issue::id_token(state, client, &subject, None, &current.token.amr, &access_token, now)?;
    state.metrics.tokens_issued.inc();
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: lifetime,
        id_token,
        refresh_token: Some(handle),
        scope: handed_scope.to_string(),
    })
}
