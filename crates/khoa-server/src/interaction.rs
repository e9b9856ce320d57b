//! Resuming a pending interaction from a form post or the continue link: the
//! interaction must exist, be unexpired, and belong to this browser (its anti-forgery
//! cookie carries the interaction's token).

use crate::cookies;
use crate::error::ApiError;
use crate::flow::Flow;
use crate::i18n::Locale;
use crate::pages;
use crate::state::AppState;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use khoa_core::authorize::AuthorizationRequest;
use khoa_core::session::{handle_hash, Interaction};
use subtle::ConstantTimeEq;

pub fn tokens_match(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// `Ok(Err(page))` when the interaction cannot be resumed (expired, unknown, another
/// browser's, or its client is gone): the page to show instead.
pub async fn resume(
    state: &AppState,
    headers: &HeaderMap,
    handle: &str,
) -> Result<Result<(Interaction, Flow), Response>, ApiError> {
    let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
    let fallback = Locale::negotiate(&[], accept);
    let expired = || {
        Ok(Err(pages::error_page(
            &state.settings.branding,
            fallback,
            StatusCode::BAD_REQUEST,
            fallback.texts().expired,
        )))
    };
    if handle.is_empty() || handle.len() > 64 {
        return expired();
    }
    let Some(interaction) = state.store.interaction(&handle_hash(handle), crate::now()).await? else {
        return expired();
    };
    let cookie = cookies::get(headers, &cookies::interaction_cookie_name(&interaction.id_hash));
    if !cookie.is_some_and(|c| tokens_match(&c, &interaction.csrf_token)) {
        return expired();
    }
    let Ok(request) = serde_json::from_str::<AuthorizationRequest>(&interaction.request) else {
        return expired();
    };
    let Some(client) = state.clients.get(state.store.as_ref(), &request.client_id).await? else {
        return expired();
    };
    Ok(Ok((interaction, Flow::new(client, request, headers))))
}
