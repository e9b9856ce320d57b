//! `GET/POST /account/email/verify`: a verification link. Opening it shows the address
//! and a button; only the button (a POST with the form's token) uses the link, so a
//! mail scanner that opens links verifies nothing.

use super::{forged, form_of, form_token, form_token_valid, locale, notice, query_of};
use crate::app::state::AppState;
use crate::http::error::ApiError;
use crate::http::pages;
use crate::service::account;
use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use khoa_core::account::Purpose;
use std::net::SocketAddr;

#[derive(Template)]
#[template(path = "account_verify.html")]
pub(crate) struct VerifyPage<'a> {
    pub brand: &'a crate::app::settings::Branding,
    pub lang: &'static str,
    pub title: &'static str,
    pub a: &'static crate::http::account_texts::AccountTexts,
    pub email: &'a str,
    pub action: &'static str,
    pub csrf_token: &'a str,
    pub token: &'a str,
}

/// The confirmation page of a mailed link of `purpose` posting to `action`, or the
/// notice that the link cannot be used.
pub(crate) async fn confirmation_page(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    purpose: Purpose,
    action: &'static str,
) -> Result<Response, ApiError> {
    let query = query_of(uri);
    let locale = locale(query.get("lang").map(String::as_str), headers);
    let a = locale.account();
    let token = query.get("token").map(String::as_str).unwrap_or("");
    let Some(link) = account::usable_link(state, token, purpose).await? else {
        return Ok(notice(state, locale, StatusCode::BAD_REQUEST, a.verify_title, a.link_invalid, None));
    };
    let (csrf_token, cookies) = form_token(state, headers);
    let html = pages::render(&VerifyPage {
        brand: &state.settings.branding,
        lang: locale.tag(),
        title: a.verify_title,
        a,
        email: link.email.as_deref().unwrap_or(""),
        action,
        csrf_token: &csrf_token,
        token,
    })?;
    Ok(pages::page(StatusCode::OK, html, None, cookies))
}

pub(crate) async fn get(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Result<Response, ApiError> {
    confirmation_page(&state, &uri, &headers, Purpose::EmailVerification, "/account/email/verify").await
}

pub(crate) async fn post(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form = form_of(&body);
    let locale = locale(form.get("lang").map(String::as_str), &headers);
    if !form_token_valid(&state, &headers, &form) {
        return Ok(forged(&state, locale));
    }
    let a = locale.account();
    let address = crate::http::client_address(&state.settings, peer.ip(), &headers);
    let token = form.get("token").map(String::as_str).unwrap_or("");
    let link = format!("/?lang={}", locale.tag());
    match account::verify_email(&state, token, address).await? {
        Some(_) => {
            Ok(notice(&state, locale, StatusCode::OK, a.verified_title, a.verified, Some((&link, a.go_to_account))))
        }
        None => Ok(notice(&state, locale, StatusCode::BAD_REQUEST, a.verify_title, a.link_invalid, None)),
    }
}
