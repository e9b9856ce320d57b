//! `POST /oauth2/revoke` (RFC 7009).

use crate::client_authn::{authenticate, check_origin, read_form};
use crate::cors::Verdict;
use crate::error::TokenError;
use crate::grants::{field, no_store};
use crate::state::AppState;
use crate::tokens::{find, Found};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use khoa_core::token_error::TokenEndpointError;

pub(crate) async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let mut verdict = Verdict::of(&headers, None);
    let result = revoke(&state, &headers, &body, &mut verdict).await;
    verdict.respond(&state, result, None).await
}

/// A CORS preflight (browser apps).
pub(crate) async fn preflight(State(state): State<AppState>, headers: HeaderMap) -> Response {
    crate::cors::preflight(&state, &headers, "POST").await
}

async fn revoke(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    verdict: &mut Verdict,
) -> Result<Response, TokenError> {
    let form = read_form(headers, body)?;
    // A foreign origin is refused before anything is revoked (`cors.rs`).
    check_origin(state, headers, &form, verdict).await?;
    let client = authenticate(state, headers, &form).await?;
    let Some(token) = field(&form, "token") else {
        return Err(TokenEndpointError::InvalidRequest("token is required").into());
    };
    let hint = field(&form, "token_type_hint");
    // §2.2.1: a type the server cannot revoke.
    if hint.is_some_and(|h| h != "access_token" && h != "refresh_token") {
        return Err(
            TokenEndpointError::UnsupportedTokenType("only access_token and refresh_token can be revoked").into()
        );
    }
    let now = state.now();
    match find(state, token, hint).await? {
        // §2.1: a token of another client is refused, and stays valid.
        Some(found) if found.client_id() != client.client_id => {
            return Err(TokenEndpointError::UnauthorizedClient("the token was issued to another client").into());
        }
        Some(Found::Access(claims, _)) => {
            state.store.revoke_access_token(&claims.jti, now).await?;
        }
        // Revoking a refresh token revokes its family: every refresh token and every
        // access token minted from it.
        Some(Found::Refresh(r)) => {
            state.store.revoke_family(&r.token.family_id, now).await?;
        }
        // §2.2: unknown (or already invalid) tokens also get 200.
        None => {}
    }
    let mut res = StatusCode::OK.into_response();
    no_store(res.headers_mut());
    Ok(res)
}
