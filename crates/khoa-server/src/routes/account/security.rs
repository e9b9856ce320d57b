//! The account page's Security section: an authenticator app set up or removed, and
//! recovery codes made anew. Each change needs a sign-in within the last five minutes
//! (`khoa_core::authn::recent`; else the person signs in again, every factor), is
//! audited, and is mailed to the person. The last second factor cannot be removed
//! while a policy requires one (`khoa_core::authn::may_remove`).

use super::home::{account_page, done, Posted, Visitor};
use crate::app::state::AppState;
use crate::http::error::ApiError;
use crate::http::i18n::Locale;
use crate::http::pages;
use crate::service::account::{factor_notice, FactorChange};
use crate::service::signin::{self, Added};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use khoa_core::audit::{kind, Actor, Event};
use khoa_core::authn::Method;
use khoa_core::UnixTime;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// How long an enrolment shown on the page may be confirmed.
const ENROLMENT_LIFETIME: i64 = 10 * 60;
const ENROLMENT_AAD: &[u8] = b"khoa account totp enrolment v1";

/// An authenticator app being set up: its secret, sealed in the page, bound to its
/// person and to a deadline.
#[derive(Serialize, Deserialize)]
struct Enrolment {
    user_id: i64,
    secret: String,
    exp: UnixTime,
}

/// `None` when the visitor signed in recently enough to change how they sign in; else
/// the page that asks them to sign in again.
async fn needs_recent(state: &AppState, v: &Visitor, locale: Locale) -> Result<Option<Response>, ApiError> {
    if khoa_core::authn::recent(v.session.auth_time, state.now()) {
        return Ok(None);
    }
    let error = Some(locale.factors().recent_needed.to_string());
    Ok(Some(account_page(state, v, locale, None, error, StatusCode::FORBIDDEN).await?))
}

fn enrol_page(
    state: &AppState,
    v: &Visitor,
    locale: Locale,
    enrolment: &Enrolment,
    error: Option<&'static str>,
) -> Result<Response, ApiError> {
    let Some(bytes) = khoa_core::totp::from_base32(&enrolment.secret) else {
        return Err(ApiError::Internal("an enrolment secret that is not base32".into()));
    };
    let sealed = serde_json::to_vec(enrolment)
        .ok()
        .and_then(|plain| state.master.seal_text(ENROLMENT_AAD, &plain).ok())
        .ok_or_else(|| ApiError::Internal("the enrolment cannot be sealed".into()))?;
    let f = locale.factors();
    let otpauth = khoa_core::totp::otpauth_uri(&bytes, &state.settings.branding.product_name, &v.user.username);
    let qr = pages::qr_svg(&otpauth).unwrap_or_default();
    let html = pages::render(&pages::TotpEnrolPage {
        brand: &state.settings.branding,
        lang: locale.tag(),
        title: f.enrol_title,
        f,
        intro: f.enrol_account_intro,
        error,
        qr_svg: &qr,
        otpauth: &otpauth,
        secret: &pages::grouped(&enrolment.secret),
        action: "/account/totp",
        hidden: vec![("csrf_token", &v.csrf), ("lang", locale.tag()), ("enrolment", &sealed)],
    })?;
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok(pages::page(status, html, None, vec![]))
}

fn codes_page(state: &AppState, locale: Locale, codes: &[String], next: &str) -> Result<Response, ApiError> {
    let f = locale.factors();
    let html = pages::render(&pages::RecoveryCodesPage {
        brand: &state.settings.branding,
        lang: locale.tag(),
        title: f.codes_title,
        f,
        codes,
        next,
    })?;
    Ok(pages::page(StatusCode::OK, html, None, vec![]))
}

/// `POST /account/totp/start`: a new secret, shown as a QR code, a link and text.
pub(crate) async fn totp_start(State(state): State<AppState>, posted: Posted) -> Result<Response, ApiError> {
    let Posted { v, locale, .. } = posted;
    if let Some(page) = needs_recent(&state, &v, locale).await? {
        return Ok(page);
    }
    let (enrolled, _) = signin::enrolled(state.store.as_ref(), &v.user).await?;
    if enrolled.totp {
        return Ok(done(locale, "factor_added"));
    }
    let secret = khoa_core::totp::base32(&khoa_core::totp::new_secret());
    let enrolment = Enrolment { user_id: v.user.id, secret, exp: state.now() + ENROLMENT_LIFETIME };
    enrol_page(&state, &v, locale, &enrolment, None)
}

/// `POST /account/totp`: the app confirmed by one of its codes; the first second factor
/// comes with recovery codes, shown once.
pub(crate) async fn totp_confirm(State(state): State<AppState>, posted: Posted) -> Result<Response, ApiError> {
    let Posted { v, form, locale, address } = posted;
    if let Some(page) = needs_recent(&state, &v, locale).await? {
        return Ok(page);
    }
    let now = state.now();
    let enrolment: Option<Enrolment> = form
        .get("enrolment")
        .filter(|s| s.len() <= 1024)
        .and_then(|s| state.master.open_text(ENROLMENT_AAD, s).ok())
        .and_then(|plain| serde_json::from_slice(&plain).ok())
        .filter(|e: &Enrolment| e.user_id == v.user.id && now < e.exp);
    let Some(enrolment) = enrolment else {
        let error = Some(locale.texts().expired.to_string());
        return account_page(&state, &v, locale, None, error, StatusCode::BAD_REQUEST).await;
    };
    let (enrolled, _) = signin::enrolled(state.store.as_ref(), &v.user).await?;
    let Some(secret) = khoa_core::totp::from_base32(&enrolment.secret).filter(|_| !enrolled.totp) else {
        return Ok(done(locale, "factor_added"));
    };
    let code = form.get("code").map(String::as_str).unwrap_or("");
    let actor = Actor::User(v.user.id);
    match signin::add_totp(&state, &v.user, &secret, code, actor, now).await? {
        Added::Wrong => enrol_page(&state, &v, locale, &enrolment, Some(locale.factors().wrong_code)),
        Added::Added { codes } => {
            tracing::info!(user_id = v.user.id, %address, "authenticator app added");
            factor_notice(&state, &v.user, FactorChange::Added, locale).await?;
            match codes {
                Some(codes) => codes_page(&state, locale, &codes, &format!("/?lang={}&done=factor_added", locale.tag())),
                None => Ok(done(locale, "factor_added")),
            }
        }
    }
}

/// `POST /account/factors/remove`: one of the visitor's apps or passkeys, unless it is
/// the last second factor a policy requires. With the last second factor go the
/// recovery codes (they stand in for one).
pub(crate) async fn remove(State(state): State<AppState>, posted: Posted) -> Result<Response, ApiError> {
    let Posted { v, form, locale, address } = posted;
    if let Some(page) = needs_recent(&state, &v, locale).await? {
        return Ok(page);
    }
    let id: Option<i64> = form.get("id").and_then(|s| s.parse().ok());
    let (enrolled, credentials) = signin::enrolled(state.store.as_ref(), &v.user).await?;
    let factor = |c: &&khoa_store::Credential| matches!(c.method, Method::Totp | Method::Passkey);
    let Some(target) = credentials.iter().filter(factor).find(|c| Some(c.id) == id) else {
        // Not theirs, or gone already: nothing to do, and nothing said of others'.
        return Ok(done(locale, "factor_removed"));
    };
    let count = credentials.iter().filter(|c| c.method == target.method).count();
    if !khoa_core::authn::may_remove(&enrolled, target.method, count, state.settings.require_mfa) {
        let error = Some(locale.factors().last_factor.to_string());
        return account_page(&state, &v, locale, None, error, StatusCode::CONFLICT).await;
    }
    let now = state.now();
    let mut event = Event::new(now, kind::CREDENTIAL_REMOVED, Actor::User(v.user.id))
        .from_address(Some(address.to_string()))
        .detail(json!({ "method": target.method.as_str() }));
    event.user_id = Some(v.user.id);
    if !state.store.delete_credential(v.user.id, target.id, &event).await? {
        return Ok(done(locale, "factor_removed"));
    }
    if credentials.iter().filter(factor).count() == 1 {
        let mut event = Event::new(now, kind::CREDENTIAL_REMOVED, Actor::User(v.user.id))
            .from_address(Some(address.to_string()))
            .detail(json!({ "method": "recovery_code", "reason": "no_second_factor_left" }));
        event.user_id = Some(v.user.id);
        state.store.replace_recovery_codes(v.user.id, &[], now, &event).await?;
    }
    factor_notice(&state, &v.user, FactorChange::Removed, locale).await?;
    Ok(done(locale, "factor_removed"))
}

/// `POST /account/recovery-codes`: a new set, the old one void; shown once.
pub(crate) async fn recovery_codes(State(state): State<AppState>, posted: Posted) -> Result<Response, ApiError> {
    let Posted { v, locale, .. } = posted;
    if let Some(page) = needs_recent(&state, &v, locale).await? {
        return Ok(page);
    }
    let (enrolled, _) = signin::enrolled(state.store.as_ref(), &v.user).await?;
    if !(enrolled.totp || enrolled.passkeys) {
        return Ok(done(locale, "saved"));
    }
    let codes = signin::new_recovery_codes(&state, &v.user, Actor::User(v.user.id), state.now()).await?;
    factor_notice(&state, &v.user, FactorChange::NewRecoveryCodes, locale).await?;
    codes_page(&state, locale, &codes, &format!("/?lang={}", locale.tag()))
}
