//! Password reset by mail: `GET/POST /account/password/forgot` asks for a link,
//! `GET/POST /account/password/reset` uses it. Offered only with SMTP settings.

use super::{form_token, locale, notice, other, query_of, SessionlessForm};
use crate::app::state::AppState;
use crate::http::error::ApiError;
use crate::http::i18n::Locale;
use crate::http::pages;
use crate::service::account::{self, Requested, ResetOutcome};
use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use khoa_core::account::{NewPasswordError, Purpose};

#[derive(Template)]
#[template(path = "account_forgot.html")]
struct ForgotPage<'a> {
    brand: &'a crate::app::settings::Branding,
    lang: &'static str,
    title: &'static str,
    a: &'static crate::http::account_texts::AccountTexts,
    error: Option<&'static str>,
    csrf_token: &'a str,
    other_lang: &'static str,
    other_language: &'static str,
}

#[derive(Template)]
#[template(path = "account_reset.html")]
struct ResetPage<'a> {
    brand: &'a crate::app::settings::Branding,
    lang: &'static str,
    title: &'static str,
    a: &'static crate::http::account_texts::AccountTexts,
    error: Option<&'static str>,
    csrf_token: &'a str,
    token: &'a str,
}

fn forgot_page(
    state: &AppState,
    headers: &HeaderMap,
    locale: Locale,
    error: Option<&'static str>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let (csrf_token, cookies) = form_token(state, headers);
    let a = locale.account();
    let (other_lang, other_language) = other(locale);
    let html = pages::render(&ForgotPage {
        brand: &state.settings.branding,
        lang: locale.tag(),
        title: a.forgot_title,
        a,
        error,
        csrf_token: &csrf_token,
        other_lang,
        other_language,
    })?;
    Ok(pages::page(status, html, None, cookies))
}

pub(crate) async fn forgot_get(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if state.outbox.is_none() {
        return Err(ApiError::NotFound);
    }
    let query = query_of(&uri);
    forgot_page(&state, &headers, locale(query.get("lang").map(String::as_str), &headers), None, StatusCode::OK)
}

pub(crate) async fn forgot_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    posted: SessionlessForm,
) -> Result<Response, ApiError> {
    if state.outbox.is_none() {
        return Err(ApiError::NotFound);
    }
    let locale = posted.locale;
    let a = locale.account();
    match account::request_password_reset(&state, posted.field("identifier"), posted.address, locale).await? {
        Requested::Accepted => Ok(notice(&state, locale, StatusCode::OK, a.forgot_sent_title, a.forgot_sent, None)),
        Requested::Throttled { retry_after } => {
            let mut res = forgot_page(&state, &headers, locale, Some(a.too_many), StatusCode::TOO_MANY_REQUESTS)?;
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            Ok(res)
        }
    }
}

fn reset_page(
    state: &AppState,
    headers: &HeaderMap,
    locale: Locale,
    token: &str,
    error: Option<&'static str>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let (csrf_token, cookies) = form_token(state, headers);
    let a = locale.account();
    let html = pages::render(&ResetPage {
        brand: &state.settings.branding,
        lang: locale.tag(),
        title: a.reset_title,
        a,
        error,
        csrf_token: &csrf_token,
        token,
    })?;
    Ok(pages::page(status, html, None, cookies))
}

fn link_unusable(state: &AppState, locale: Locale) -> Response {
    let a = locale.account();
    let again = format!("/account/password/forgot?lang={}", locale.tag());
    notice(state, locale, StatusCode::BAD_REQUEST, a.reset_title, a.link_invalid, Some((&again, a.send_link)))
}

/// The form of a reset link. Opening it uses nothing up (mail scanners open links).
pub(crate) async fn reset_get(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let query = query_of(&uri);
    let locale = locale(query.get("lang").map(String::as_str), &headers);
    let token = query.get("token").map(String::as_str).unwrap_or("");
    if account::usable_link(&state, token, Purpose::PasswordReset).await?.is_none() {
        return Ok(link_unusable(&state, locale));
    }
    reset_page(&state, &headers, locale, token, None, StatusCode::OK)
}

pub(crate) async fn reset_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    posted: SessionlessForm,
) -> Result<Response, ApiError> {
    let (locale, field) = (posted.locale, |k: &str| posted.field(k));
    let a = locale.account();
    let token = field("token");
    match account::reset_password(&state, token, field("password"), field("confirmation"), posted.address).await? {
        ResetOutcome::Done(_) => {
            let link = format!("/?lang={}", locale.tag());
            Ok(notice(&state, locale, StatusCode::OK, a.reset_done_title, a.reset_done, Some((&link, a.go_to_account))))
        }
        ResetOutcome::LinkUnusable => Ok(link_unusable(&state, locale)),
        ResetOutcome::Password(e) => {
            let message = match e {
                NewPasswordError::Mismatch => a.password_mismatch,
                NewPasswordError::Rules => a.password_rules,
            };
            reset_page(&state, &headers, locale, token, Some(message), StatusCode::BAD_REQUEST)
        }
    }
}
