//! The pages a person uses for their own account: the account page at `/`, password
//! reset and email verification by mail, and (when enabled) self-registration. They
//! render what `service::account` decides, work without JavaScript, and speak
//! Vietnamese and English.
//!
//! Every form carries an anti-forgery token: the account page's is bound to its
//! sign-in (`home.rs`); the others' is a double-submit cookie ([`form_token`]).

pub(crate) mod home;
pub(crate) mod password;
pub(crate) mod register;
pub(crate) mod security;
pub(crate) mod verify;

#[cfg(test)]
mod security_tests;
#[cfg(test)]
mod tests;

use crate::app::state::AppState;
use crate::http::account_texts::AccountTexts;
use crate::http::i18n::Locale;
use crate::http::pages;
use askama::Template;
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::Response;
use std::collections::HashMap;

/// The anti-forgery cookie of the sessionless forms (`__Host-` when the issuer is https,
/// so that no other host can plant it).
fn form_cookie_name(state: &AppState) -> &'static str {
    if state.settings.secure_cookies() {
        "__Host-khoa_form"
    } else {
        "khoa_form"
    }
}

/// The token a sessionless form carries: this browser's, or a new one with the
/// `Set-Cookie` that gives it.
pub(crate) fn form_token(state: &AppState, headers: &HeaderMap) -> (String, Vec<(HeaderName, String)>) {
    let name = form_cookie_name(state);
    match crate::http::cookies::get(headers, name).filter(|v| v.len() == 43) {
        Some(token) => (token, vec![]),
        None => {
            let token = khoa_core::random::random_token::<32>();
            let secure = if state.settings.secure_cookies() { "; Secure" } else { "" };
            let cookie = format!("{name}={token}; Path=/; Max-Age=86400; HttpOnly; SameSite=Strict{secure}");
            (token, vec![(header::SET_COOKIE, cookie)])
        }
    }
}

/// Whether a submitted form carries this browser's token (in constant time).
pub(crate) fn form_token_valid(state: &AppState, headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    let submitted = form.get("csrf_token").map(String::as_str).unwrap_or("");
    crate::http::cookies::get(headers, form_cookie_name(state))
        .is_some_and(|cookie| cookie.len() == 43 && crate::service::interaction::tokens_match(submitted, &cookie))
}

/// The language of an account page: `lang` (query or form), then `Accept-Language`.
pub(crate) fn locale(lang: Option<&str>, headers: &HeaderMap) -> Locale {
    let asked: Vec<String> = lang.map(|l| vec![l.to_string()]).unwrap_or_default();
    Locale::negotiate(&asked, headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()))
}

/// The other language's tag and name, for the switch on each page.
pub(crate) fn other(locale: Locale) -> (&'static str, &'static str) {
    match locale {
        Locale::Vi => ("en", Locale::Vi.texts().other_language),
        Locale::En => ("vi", Locale::En.texts().other_language),
    }
}

pub(crate) fn query_of(uri: &axum::http::Uri) -> HashMap<String, String> {
    crate::http::forms::query_pairs(uri).into_iter().collect()
}

#[derive(Template)]
#[template(path = "account_notice.html")]
struct NoticePage<'a> {
    brand: &'a crate::app::settings::Branding,
    lang: &'static str,
    title: &'a str,
    message: &'a str,
    problem: bool,
    link: Option<(&'a str, &'a str)>,
}

/// A page with one message (and a link onwards): `problem` shows it as an error.
pub(crate) fn notice(
    state: &AppState,
    locale: Locale,
    status: StatusCode,
    title: &str,
    message: &str,
    link: Option<(&str, &str)>,
) -> Response {
    let problem = !status.is_success();
    let page = NoticePage { brand: &state.settings.branding, lang: locale.tag(), title, message, problem, link };
    match pages::render(&page) {
        Ok(html) => pages::page(status, html, None, vec![]),
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}

/// A submitted sessionless form (forgot, reset, verify, sign-up), its anti-forgery
/// token checked: the fields, the page's language and the client's address. A forged
/// form is answered with [`forged`] before the handler runs.
pub(crate) struct SessionlessForm {
    pub form: HashMap<String, String>,
    pub locale: Locale,
    pub address: std::net::IpAddr,
}

impl SessionlessForm {
    pub fn field(&self, name: &str) -> &str {
        self.form.get(name).map(String::as_str).unwrap_or("")
    }
}

impl axum::extract::FromRequest<AppState> for SessionlessForm {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &AppState) -> Result<Self, Response> {
        let (headers, peer, form) = read_post(req).await?;
        let locale = locale(form.get("lang").map(String::as_str), &headers);
        if !form_token_valid(state, &headers, &form) {
            return Err(forged(state, locale));
        }
        let address = crate::http::client_address(&state.settings, peer.ip(), &headers);
        Ok(Self { form, locale, address })
    }
}

pub(crate) use crate::http::forms::read_post;

/// The page shown for a form whose anti-forgery token is missing or wrong.
pub(crate) fn forged(state: &AppState, locale: Locale) -> Response {
    let a: &AccountTexts = locale.account();
    notice(state, locale, StatusCode::BAD_REQUEST, locale.texts().error_title, a.form_expired, None)
}
