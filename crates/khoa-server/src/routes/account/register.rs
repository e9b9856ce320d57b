//! Self-registration (`accounts.self_registration`, off by default): `GET/POST
//! /account/register` mails a link; `GET/POST /account/register/complete` creates the
//! account once the link is used. Throttled like the other mailed links.

use super::{form_token, locale, notice, other, query_of, SessionlessForm};
use crate::app::state::AppState;
use crate::http::error::ApiError;
use crate::http::i18n::Locale;
use crate::http::pages;
use crate::service::account::{self, Completed, Registration, RegistrationRefused, Requested};
use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use khoa_core::account::{NewPasswordError, Purpose};
use std::collections::HashMap;

#[derive(Template)]
#[template(path = "account_register.html")]
struct RegisterPage<'a> {
    brand: &'a crate::app::settings::Branding,
    lang: &'static str,
    title: &'static str,
    t: &'static crate::http::i18n::Texts,
    a: &'static crate::http::account_texts::AccountTexts,
    error: Option<String>,
    csrf_token: &'a str,
    username: &'a str,
    email: &'a str,
    name: &'a str,
    other_lang: &'static str,
    other_language: &'static str,
}

fn enabled(state: &AppState) -> bool {
    state.settings.self_registration && state.outbox.is_some()
}

fn register_page(
    state: &AppState,
    headers: &HeaderMap,
    locale: Locale,
    form: &HashMap<String, String>,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let (csrf_token, cookies) = form_token(state, headers);
    let a = locale.account();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let (other_lang, other_language) = other(locale);
    let html = pages::render(&RegisterPage {
        brand: &state.settings.branding,
        lang: locale.tag(),
        title: a.register_title,
        t: locale.texts(),
        a,
        error,
        csrf_token: &csrf_token,
        username: field("username"),
        email: field("email"),
        name: field("name"),
        other_lang,
        other_language,
    })?;
    Ok(pages::page(status, html, None, cookies))
}

pub(crate) async fn get(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Result<Response, ApiError> {
    if !enabled(&state) {
        return Err(ApiError::NotFound);
    }
    let query = query_of(&uri);
    let locale = locale(query.get("lang").map(String::as_str), &headers);
    register_page(&state, &headers, locale, &HashMap::new(), None, StatusCode::OK)
}

pub(crate) async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    posted: SessionlessForm,
) -> Result<Response, ApiError> {
    if !enabled(&state) {
        return Err(ApiError::NotFound);
    }
    let (locale, form, address) = (posted.locale, &posted.form, posted.address);
    let a = locale.account();
    let field = |k: &str| posted.field(k);
    let registration = Registration {
        username: field("username"),
        email: field("email"),
        name: field("name"),
        password: field("password"),
        confirmation: field("confirmation"),
    };
    match account::request_registration(&state, &registration, address, locale).await? {
        Ok(Requested::Accepted) => {
            Ok(notice(&state, locale, StatusCode::OK, a.forgot_sent_title, a.register_sent, None))
        }
        Ok(Requested::Throttled { retry_after }) => {
            let status = StatusCode::TOO_MANY_REQUESTS;
            let mut res = register_page(&state, &headers, locale, form, Some(a.too_many.to_string()), status)?;
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            Ok(res)
        }
        Err(refused) => {
            let message = match refused {
                RegistrationRefused::Password(NewPasswordError::Mismatch) => a.password_mismatch.to_string(),
                RegistrationRefused::Password(NewPasswordError::Rules) => a.password_rules.to_string(),
                RegistrationRefused::Profile(e) => format!("{} {e}", a.invalid_input),
            };
            register_page(&state, &headers, locale, form, Some(message), StatusCode::BAD_REQUEST)
        }
    }
}

pub(crate) async fn complete_get(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    super::verify::confirmation_page(&state, &uri, &headers, Purpose::Registration, "/account/register/complete").await
}

pub(crate) async fn complete_post(
    State(state): State<AppState>,
    posted: SessionlessForm,
) -> Result<Response, ApiError> {
    let locale = posted.locale;
    let a = locale.account();
    let link = format!("/?lang={}", locale.tag());
    Ok(match account::complete_registration(&state, posted.field("token"), posted.address).await? {
        Completed::Created(_) => {
            notice(&state, locale, StatusCode::OK, a.registered_title, a.registered, Some((&link, a.go_to_account)))
        }
        Completed::Taken => notice(&state, locale, StatusCode::CONFLICT, a.register_title, a.username_taken, None),
        Completed::LinkUnusable => {
            notice(&state, locale, StatusCode::BAD_REQUEST, a.register_title, a.link_invalid, None)
        }
    })
}
