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
    let sealed = state.master.seal_json(ENROLMENT_AAD, enrolment).map_err(|e| ApiError::Internal(e.to_string()))?;
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
        .and_then(|s| state.master.open_json(ENROLMENT_AAD, s))
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
                Some(codes) => {
                    codes_page(&state, locale, &codes, &format!("/?lang={}&done=factor_added", locale.tag()))
                }
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

/// A passkey being added on the account page: the ceremony, sealed in the page, bound
/// to its person and to a deadline.
#[derive(Serialize, Deserialize)]
struct PasskeyEnrolment {
    user_id: i64,
    ceremony: crate::service::passkeys::Ceremony,
    challenge: String,
    exp: UnixTime,
}

const PASSKEY_AAD: &[u8] = b"khoa account passkey enrolment v1";

async fn passkey_page(
    state: &AppState,
    v: &Visitor,
    locale: Locale,
    error: Option<&'static str>,
) -> Result<Response, ApiError> {
    let f = locale.factors();
    let existing = state.store.credentials(v.user.id).await?;
    let started = crate::service::passkeys::start_registration(state, &v.user, &existing)?;
    let enrolment = PasskeyEnrolment {
        user_id: v.user.id,
        ceremony: started.ceremony,
        challenge: started.challenge,
        exp: state.now() + ENROLMENT_LIFETIME,
    };
    let sealed = state.master.seal_json(PASSKEY_AAD, &enrolment).map_err(|e| ApiError::Internal(e.to_string()))?;
    let hidden = vec![("csrf_token", v.csrf.as_str()), ("lang", locale.tag()), ("enrolment", sealed.as_str())];
    let mut w = pages::WebauthnForm::new("/account/passkeys", hidden, &started.options, f, f.passkey_create);
    w.name_label = Some(f.passkey_name);
    w.default_name = f.passkey_default_name;
    let html = pages::render(&pages::PasskeyAddPage {
        brand: &state.settings.branding,
        lang: locale.tag(),
        title: f.passkey_add,
        intro: f.passkey_add_intro,
        error,
        w: Some(w),
    })?;
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok(pages::page_with_script(status, html, None, vec![]))
}

/// `POST /account/passkeys/start`: the browser is asked to make a passkey.
pub(crate) async fn passkey_start(State(state): State<AppState>, posted: Posted) -> Result<Response, ApiError> {
    let Posted { v, locale, .. } = posted;
    if state.passkeys.is_none() {
        return Ok(done(locale, "saved"));
    }
    if let Some(page) = needs_recent(&state, &v, locale).await? {
        return Ok(page);
    }
    passkey_page(&state, &v, locale, None).await
}

/// `POST /account/passkeys`: the passkey the browser made, verified and stored.
pub(crate) async fn passkey_add(State(state): State<AppState>, posted: Posted) -> Result<Response, ApiError> {
    use crate::service::passkeys::{finish_registration, Registered};
    let Posted { v, form, locale, .. } = posted;
    if state.passkeys.is_none() {
        return Ok(done(locale, "saved"));
    }
    if let Some(page) = needs_recent(&state, &v, locale).await? {
        return Ok(page);
    }
    let now = state.now();
    let enrolment: Option<PasskeyEnrolment> = form
        .get("enrolment")
        .filter(|s| s.len() <= 16 * 1024)
        .and_then(|s| state.master.open_json(PASSKEY_AAD, s))
        .filter(|e: &PasskeyEnrolment| e.user_id == v.user.id && now < e.exp);
    let Some(enrolment) = enrolment else {
        let error = Some(locale.texts().expired.to_string());
        return account_page(&state, &v, locale, None, error, StatusCode::BAD_REQUEST).await;
    };
    let f = locale.factors();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let (credential, name) = (field("credential"), field("name"));
    let actor = Actor::User(v.user.id);
    let e = &enrolment;
    match finish_registration(&state, &v.user, &e.ceremony, &e.challenge, credential, name, actor, now).await? {
        Registered::Added(_) => {
            factor_notice(&state, &v.user, FactorChange::Added, locale).await?;
            Ok(done(locale, "passkey_added"))
        }
        Registered::Invalid => passkey_page(&state, &v, locale, Some(f.passkey_failed)).await,
        Registered::Duplicate => passkey_page(&state, &v, locale, Some(f.passkey_duplicate)).await,
        Registered::TooMany => {
            account_page(&state, &v, locale, None, Some(f.passkey_too_many.to_string()), StatusCode::CONFLICT).await
        }
    }
}

/// `POST /account/passkeys/rename`: a new name for one of the visitor's passkeys.
pub(crate) async fn passkey_rename(State(state): State<AppState>, posted: Posted) -> Result<Response, ApiError> {
    let Posted { v, form, locale, address } = posted;
    let id: Option<i64> = form.get("id").and_then(|s| s.parse().ok());
    let name: String = form
        .get("name")
        .map(|n| n.trim().chars().filter(|c| !c.is_control()).take(crate::service::passkeys::MAX_NAME).collect())
        .unwrap_or_default();
    let credentials = state.store.credentials(v.user.id).await?;
    let Some(target) = credentials.iter().find(|c| Some(c.id) == id && c.method == Method::Passkey) else {
        return Ok(done(locale, "saved"));
    };
    if name.is_empty() {
        return Ok(done(locale, "saved"));
    }
    let mut event = Event::new(state.now(), kind::CREDENTIAL_RENAMED, Actor::User(v.user.id))
        .from_address(Some(address.to_string()))
        .detail(json!({ "method": "passkey" }));
    event.user_id = Some(v.user.id);
    state.store.rename_credential(v.user.id, target.id, &name, &event).await?;
    Ok(done(locale, "saved"))
}
