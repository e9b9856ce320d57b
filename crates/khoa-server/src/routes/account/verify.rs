//! `GET/POST /account/email/verify`: a verification link. Opening it shows the address,
//! the account that asks for it and what confirming does; only the button (a POST with
//! the form's token) uses the link, so a mail scanner that opens links verifies nothing.
//! `GET/POST /account/email/report`: the "it was not me" link of an address change's
//! notice, likewise.

use super::{form_token, locale, notice, query_of, SessionlessForm};
use crate::app::state::AppState;
use crate::http::error::ApiError;
use crate::http::pages;
use crate::service::account;
use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use khoa_core::account::Purpose;

#[derive(Template)]
#[template(path = "account_verify.html")]
pub(crate) struct VerifyPage<'a> {
    pub brand: &'a crate::app::settings::Branding,
    pub lang: &'static str,
    pub title: &'static str,
    pub a: &'static crate::http::account_texts::AccountTexts,
    pub question: &'static str,
    pub email: &'a str,
    /// The account that asks (its username).
    pub account: &'a str,
    pub explain: &'static str,
    pub confirm: &'static str,
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
    // Who asks: the account's username, or the one a sign-up would create.
    let account = match purpose {
        Purpose::Registration => account::pending_username(&link).unwrap_or_default(),
        _ => state.store.user_by_id(link.user_id).await?.map(|u| u.username).unwrap_or_default(),
    };
    let (title, question, explain, confirm) = match purpose {
        Purpose::Registration => (a.verify_title, a.verify_question, a.register_explain, a.verify_confirm),
        Purpose::ChangeReport => (a.report_title, a.report_question, a.report_explain, a.report_confirm),
        _ => (a.verify_title, a.verify_question, a.verify_explain, a.verify_confirm),
    };
    let html = pages::render(&VerifyPage {
        brand: &state.settings.branding,
        lang: locale.tag(),
        title,
        a,
        question,
        email: link.email.as_deref().unwrap_or(""),
        account: &account,
        explain,
        confirm,
        action,
        csrf_token: &csrf_token,
        token,
    })?;
    Ok(pages::page(StatusCode::OK, html, None, cookies))
}

pub(crate) async fn get(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Result<Response, ApiError> {
    confirmation_page(&state, &uri, &headers, Purpose::EmailVerification, "/account/email/verify").await
}

pub(crate) async fn post(State(state): State<AppState>, posted: SessionlessForm) -> Result<Response, ApiError> {
    let locale = posted.locale;
    let a = locale.account();
    let link = format!("/?lang={}", locale.tag());
    match account::verify_email(&state, posted.field("token"), posted.address).await? {
        account::Verified::Done { .. } => {
            Ok(notice(&state, locale, StatusCode::OK, a.verified_title, a.verified, Some((&link, a.go_to_account))))
        }
        account::Verified::Taken => {
            Ok(notice(&state, locale, StatusCode::CONFLICT, a.verify_title, a.email_taken, None))
        }
        account::Verified::LinkUnusable => {
            Ok(notice(&state, locale, StatusCode::BAD_REQUEST, a.verify_title, a.link_invalid, None))
        }
    }
}

pub(crate) async fn report_get(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    confirmation_page(&state, &uri, &headers, Purpose::ChangeReport, "/account/email/report").await
}

pub(crate) async fn report_post(State(state): State<AppState>, posted: SessionlessForm) -> Result<Response, ApiError> {
    let locale = posted.locale;
    let a = locale.account();
    let forgot = format!("/account/password/forgot?lang={}", locale.tag());
    match account::report_email_change(&state, posted.field("token"), posted.address).await? {
        Some(_) => {
            Ok(notice(&state, locale, StatusCode::OK, a.reported_title, a.reported, Some((&forgot, a.forgot_link))))
        }
        None => Ok(notice(&state, locale, StatusCode::BAD_REQUEST, a.report_title, a.link_invalid, None)),
    }
}
