//! A pending authorization request ([`Flow`]) and its interaction: sealed in its handle
//! until somebody signs in, and resumed from a form post or the continue link (the
//! interaction must exist, be unexpired, and belong to this browser: its anti-forgery
//! cookie carries the interaction's token). What happens next is `service::flow`'s;
//! this module does not depend on it.

use crate::app::state::AppState;
use crate::http::cookies;
use crate::http::error::ApiError;
use crate::http::i18n::Locale;
use axum::http::{header, HeaderMap};
use khoa_core::authorize::AuthorizationRequest;
use khoa_core::client::Client;
use khoa_core::session::{handle_hash, Interaction, Pending};
use subtle::ConstantTimeEq;

/// The pending request, its client and the page language.
pub struct Flow {
    pub client: std::sync::Arc<Client>,
    pub request: AuthorizationRequest,
    pub locale: Locale,
}

impl Flow {
    pub fn new(client: std::sync::Arc<Client>, request: AuthorizationRequest, headers: &HeaderMap) -> Self {
        let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
        let locale = Locale::negotiate(&request.ui_locales, accept);
        Self { client, request, locale }
    }

    pub fn client_name(&self) -> &str {
        self.client.client_name.as_deref().unwrap_or(&self.client.client_id)
    }
}

pub fn tokens_match(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// `Ok(Err(locale))` when the interaction cannot be resumed (expired, unknown, another
/// browser's, or its client is gone): the language of the page that says so.
pub async fn resume(
    state: &AppState,
    headers: &HeaderMap,
    handle: &str,
) -> Result<Result<(Interaction, Flow), Locale>, ApiError> {
    let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
    let fallback = Locale::negotiate(&[], accept);
    let expired = || Ok(Err(fallback));
    let interaction = if is_sealed(handle) {
        open(state, handle, state.now())
    } else if handle.is_empty() || handle.len() > 64 {
        None
    } else {
        state.store.interaction(&handle_hash(handle), state.now()).await?
    };
    let Some(interaction) = interaction else {
        return expired();
    };
    let cookie = cookies::get(headers, &cookies::interaction_cookie_name(&interaction.id_hash));
    if !cookie.is_some_and(|c| tokens_match(&c, &interaction.csrf_token)) {
        return expired();
    }
    let Some(Pending::Authorization(request)) = Pending::from_json(&interaction.request) else {
        return expired();
    };
    let Some(client) = state.clients.get(state.store.as_ref(), &request.client_id).await? else {
        return expired();
    };
    Ok(Ok((interaction, Flow::new(client, request, headers))))
}

/// Handles of interactions that are stored nowhere but in themselves.
const SEALED_PREFIX: &str = "s.";
const SEALED_AAD: &[u8] = b"khoa interaction v1";
/// Longest sealed handle accepted (the request's fields are capped far below this).
const MAX_SEALED_LEN: usize = 16 * 1024;

pub fn is_sealed(handle: &str) -> bool {
    handle.starts_with(SEALED_PREFIX)
}

/// A handle that carries the pending request, its anti-forgery token and its times,
/// sealed (AES-256-GCM) under the master key: it cannot be read, made or altered.
pub fn seal(
    state: &AppState,
    csrf_token: &str,
    request: &str,
    created_at: i64,
    expires_at: i64,
) -> Result<String, ApiError> {
    let sealed = state
        .master
        .seal_json(SEALED_AAD, &(csrf_token, request, created_at, expires_at))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(format!("{SEALED_PREFIX}{sealed}"))
}

/// The interaction a sealed handle carries, if it is ours and unexpired at `now`.
fn open(state: &AppState, handle: &str, now: i64) -> Option<Interaction> {
    if handle.len() > MAX_SEALED_LEN {
        return None;
    }
    let (csrf_token, request, created_at, expires_at): (String, String, i64, i64) =
        state.master.open_json(SEALED_AAD, handle.strip_prefix(SEALED_PREFIX)?)?;
    (now < expires_at).then(|| Interaction {
        id_hash: handle_hash(handle),
        csrf_token,
        request,
        sid: None,
        created_at,
        expires_at,
    })
}
