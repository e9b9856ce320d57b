//! `POST /oauth2/token` (RFC 6749 §3.2): client authentication, then the handler the
//! grant registry (`grants::REGISTRY`) holds for the grant type.

use crate::client_authn::{authenticate, check_origin, read_form};
use crate::cors::Verdict;
use crate::error::TokenError;
use crate::grants::{self, field};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use khoa_core::token_error::TokenEndpointError;

pub(crate) async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let mut verdict = Verdict::of(&headers, None);
    let result = grant(&state, &headers, &body, &mut verdict).await;
    verdict.respond(&state, result, None).await
}

/// A CORS preflight (browser apps).
pub(crate) async fn preflight(State(state): State<AppState>, headers: HeaderMap) -> Response {
    crate::cors::preflight(&state, &headers, "POST").await
}

async fn grant(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    verdict: &mut Verdict,
) -> Result<Response, TokenError> {
    let form = read_form(headers, body)?;
    // A foreign origin is refused before anything is spent (`cors.rs`).
    check_origin(state, headers, &form, verdict).await?;
    let client = authenticate(state, headers, &form).await?;
    let Some(name) = field(&form, "grant_type") else {
        return Err(TokenEndpointError::InvalidRequest("grant_type is required").into());
    };
    let Some(grant) = grants::find(name) else {
        return Err(TokenEndpointError::UnsupportedGrantType("the grant type is not supported").into());
    };
    // RFC 6749 §5.2 unauthorized_client: a grant type the client is not registered for.
    if !client.allows_grant(grant.grant_type) {
        return Err(TokenEndpointError::UnauthorizedClient("the client may not use this grant type").into());
    }
    Ok((grant.handle)(state, &client, &form).await?.into_response())
}
