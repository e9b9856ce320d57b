//! Client authentication: the one path of every endpoint that authenticates a client
//! (token, revocation, introspection, the HUTECH web exchange, the TCONNECT
//! endpoints): the credentials, then `khoa_core::client_auth` (constant-time secret
//! check), the failure metric and the per-client throttle.

use crate::app::state::AppState;
use crate::http::error::TokenError;
use crate::service::grants::Form;
use axum::http::{header, HeaderMap};
use khoa_core::client::Client;
use khoa_core::client_auth;
use khoa_core::token_error::TokenEndpointError;
use std::sync::Arc;

/// The client a request claims to be (its credentials not yet checked), if known:
/// what its `Origin` is judged by before anything else happens.
pub async fn claimed_client(
    state: &AppState,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Option<Arc<Client>>, TokenError> {
    let Ok(credentials) = credentials(headers, form) else { return Ok(None) };
    Ok(state.clients.get(state.store.as_ref(), credentials.client_id()).await?)
}

/// The client credentials of a form request: `Authorization: Basic` or the form's
/// `client_id` and `client_secret` (RFC 6749 §2.3.1).
fn credentials(headers: &HeaderMap, form: &Form) -> Result<client_auth::ClientCredentials, TokenEndpointError> {
    let field = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    client_auth::parse(authorization, field("client_id"), field("client_secret"))
}

/// Judges the request's origin by the client it claims to be (`*verdict`); a refused
/// origin is `invalid_request`, before anything else about the request is looked at.
pub async fn check_origin(
    state: &AppState,
    headers: &HeaderMap,
    form: &Form,
    verdict: &mut crate::http::cors::Verdict,
) -> Result<(), TokenError> {
    if *verdict == crate::http::cors::Verdict::NoOrigin {
        return Ok(());
    }
    let client = claimed_client(state, headers, form).await?;
    *verdict = crate::http::cors::Verdict::of(headers, client.as_deref());
    if verdict.refused() {
        return Err(TokenEndpointError::InvalidRequest("the request's Origin is not allowed for this client").into());
    }
    Ok(())
}

/// The authenticated client.
pub async fn authenticate(state: &AppState, headers: &HeaderMap, form: &Form) -> Result<Arc<Client>, TokenError> {
    authenticate_credentials(state, &credentials(headers, form)?).await
}

/// Authenticates credentials however they arrived (a form, a dialect's JSON body, a
/// decrypted payload): every failure is counted and throttled the same way.
pub async fn authenticate_credentials(
    state: &AppState,
    credentials: &client_auth::ClientCredentials,
) -> Result<Arc<Client>, TokenError> {
    let client = state.clients.get(state.store.as_ref(), credentials.client_id()).await?;
    if let Some(client) = &client {
        // The request's span names the (registered) client, authenticated or not.
        tracing::Span::current().record("client_id", client.client_id.as_str());
    }
    if let Err(e) = client_auth::verify(credentials, client.as_deref(), state.now()) {
        state.metrics.client_auth_failures.inc();
        if let Some(client) = &client {
            throttle_failure(state, &client.client_id).await?;
        }
        return Err(e.into());
    }
    client.ok_or_else(|| TokenEndpointError::invalid_client("client authentication failed", false).into())
}

/// Counts a failed authentication of a registered client (unknown client_ids are not
/// counted: there is nothing to guess, and no row to grow per name an attacker makes
/// up). Past the policy's free failures, further failures get 429 with `Retry-After`
/// for a doubling period, and are not counted while it lasts.
///
/// Only failures are refused: the right secret is always accepted, so knowing a
/// client_id (it is public) is not enough to lock its owner out. Secrets have at least
/// 256 bits or 32 characters, so the throttle bounds the cost and noise of failures
/// rather than being what stops guessing. Failures are counted in the database, shared
/// by every process; each process remembers the waiting period it last learned there,
/// so a throttled failure costs no database access.
async fn throttle_failure(state: &AppState, client_id: &str) -> Result<(), TokenError> {
    let now = state.now();
    if let Some(until) = state.client_auth_blocks.until(client_id).filter(|until| *until > now) {
        state.metrics.client_auth_throttled.inc();
        return Err(TokenError::Throttled { retry_after: until - now });
    }
    let key = format!("client:{client_id}");
    let until = state.store.record_login_failure(&key, now, &state.settings.client_auth_throttle).await?;
    state.client_auth_blocks.set(client_id, until);
    Ok(())
}
