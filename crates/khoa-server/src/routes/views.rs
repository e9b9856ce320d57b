//! What the authorization flow decided (`service::flow::Proceed`), rendered: the
//! login page and the later steps of a sign-in, the consent page, and the answers to
//! the client (a code or an error, by the request's response mode). The service
//! decides; this only renders.

use crate::app::state::AppState;
use crate::http::error::ApiError;
use crate::http::i18n::Locale;
use crate::http::pages::{self, ConsentPage, FactorPage, LoginPage, PasskeyAddPage, TotpEnrolPage, WebauthnForm};
use crate::service::flow::{interaction_for, with_pending, Flow, Proceed, SignInStep};
use axum::http::{header, StatusCode};
use axum::response::Response;
use khoa_core::authn::{Method, SignIn};
use khoa_core::authorize::{AuthorizeErrorCode, RedirectError};
use khoa_core::session::{Interaction, Session};
use khoa_core::user::User;

/// The page for what the flow decided.
pub(crate) async fn render(
    state: &AppState,
    flow: &Flow,
    interaction: Option<(&str, &Interaction)>,
    next: Proceed,
) -> Result<Response, ApiError> {
    let ok = StatusCode::OK;
    match next {
        Proceed::Refuse(code, description) => Ok(error_redirect(state, flow, code, description)),
        Proceed::SignIn(SignInStep::Login) => login_page(state, flow, interaction, None, ok).await,
        Proceed::SignIn(SignInStep::Factor { signin, methods }) => {
            factor_page(state, flow, interaction, signin, &methods, None, ok).await
        }
        Proceed::SignIn(SignInStep::EnrolTotp { signin, user }) => {
            enrol_page(state, flow, interaction, signin, &user, None, None, ok).await
        }
        Proceed::SignIn(SignInStep::EnrolPasskey { signin, user }) => {
            passkey_enrol_page(state, flow, interaction, signin, &user, None, ok).await
        }
        Proceed::Consent(session) => consent_page(state, flow, interaction, &session).await,
        Proceed::Expired => Ok(expired(state, flow.locale)),
        Proceed::Code(params) => Ok(to_client(state, flow, &params)),
    }
}

/// "This sign-in has expired": an interaction that cannot go on.
pub(crate) fn expired(state: &AppState, locale: Locale) -> Response {
    pages::error_page(&state.settings.branding, locale, StatusCode::BAD_REQUEST, locale.texts().expired)
}

/// An error response to the client (RFC 6749 §4.1.2.1, RFC 9207 `iss`), by the
/// request's response mode.
pub(crate) fn error_redirect(
    state: &AppState,
    flow: &Flow,
    code: AuthorizeErrorCode,
    description: &'static str,
) -> Response {
    let e = RedirectError {
        redirect_uri: flow.request.redirect_uri.clone(),
        response_mode: flow.request.response_mode,
        state: flow.request.state.clone(),
        code,
        description,
    };
    let params = e.params(&state.settings.issuer);
    pages::to_client(&state.settings.branding, flow.locale, &e.redirect_uri, e.response_mode, &params)
}

/// The authorization response with a code, by the request's response mode.
pub(crate) fn to_client(state: &AppState, flow: &Flow, params: &[(&'static str, String)]) -> Response {
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = &flow.request;
    pages::to_client(&state.settings.branding, flow.locale, &r.redirect_uri, r.response_mode, &params)
}

/// The second step: an app's code or a recovery code, of `methods`.
pub(crate) async fn factor_page(
    state: &AppState,
    flow: &Flow,
    interaction: Option<(&str, &Interaction)>,
    signin: SignIn,
    methods: &[Method],
    error: Option<&'static str>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    // The person's passkeys, when one is asked for.
    let started = match (methods.contains(&Method::Passkey), signin.user_id, state.passkeys.is_some()) {
        (true, Some(user_id), true) => {
            let credentials = state.store.credentials(user_id).await?;
            Some(crate::service::passkeys::start_authentication(state, &credentials)?)
        }
        _ => None,
    };
    let (options, ceremony) = match started {
        Some(s) => (Some(s.options), Some((s.ceremony, s.challenge))),
        None => (None, None),
    };
    let (handle, csrf, headers) = with_pending(state, flow, interaction, signin, None, ceremony).await?;
    let (t, f) = (flow.locale.texts(), flow.locale.factors());
    let hidden = vec![("interaction", handle.as_str()), ("csrf_token", csrf.as_str())];
    let w = options.map(|o| WebauthnForm::new("/oauth2/auth/login/passkey", hidden, &o, f, f.passkey_use));
    let scripted = w.is_some();
    let html = pages::render(&FactorPage {
        brand: &state.settings.branding,
        lang: flow.locale.tag(),
        title: f.code_title,
        t,
        f,
        client_name: flow.client_name(),
        error,
        interaction: &handle,
        csrf_token: &csrf,
        totp: methods.contains(&Method::Totp),
        recovery: methods.contains(&Method::RecoveryCode),
        w,
    })?;
    let target = pages::origin_of(&flow.request.redirect_uri);
    Ok(if scripted {
        pages::page_with_script(status, html, target.as_deref(), headers)
    } else {
        pages::page(status, html, target.as_deref(), headers)
    })
}

/// Setting up an authenticator app before the sign-in completes: a new secret, or the
/// one shown already (`secret`, base32) when a code for it was wrong.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn enrol_page(
    state: &AppState,
    flow: &Flow,
    interaction: Option<(&str, &Interaction)>,
    signin: SignIn,
    user: &User,
    secret: Option<String>,
    error: Option<&'static str>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let secret = secret.unwrap_or_else(|| khoa_core::totp::base32(&khoa_core::totp::new_secret()));
    let Some(bytes) = khoa_core::totp::from_base32(&secret) else {
        return Err(ApiError::Internal("an enrolment secret that is not base32".into()));
    };
    let (handle, csrf, headers) = with_pending(state, flow, interaction, signin, Some(secret.clone()), None).await?;
    let f = flow.locale.factors();
    let otpauth = khoa_core::totp::otpauth_uri(&bytes, &state.settings.branding.product_name, &user.username);
    let qr = pages::qr_svg(&otpauth).unwrap_or_default();
    let html = pages::render(&TotpEnrolPage {
        brand: &state.settings.branding,
        lang: flow.locale.tag(),
        title: f.enrol_title,
        f,
        intro: f.enrol_intro,
        error,
        qr_svg: &qr,
        otpauth: &otpauth,
        secret: &pages::grouped(&secret),
        action: "/oauth2/auth/login/enrol",
        hidden: vec![("interaction", &handle), ("csrf_token", &csrf)],
    })?;
    let target = pages::origin_of(&flow.request.redirect_uri);
    Ok(pages::page(status, html, target.as_deref(), headers))
}

/// Adding a passkey before the sign-in completes (a request for `phr`, by a person
/// who has none).
pub(crate) async fn passkey_enrol_page(
    state: &AppState,
    flow: &Flow,
    interaction: Option<(&str, &Interaction)>,
    signin: SignIn,
    user: &User,
    error: Option<&'static str>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let credentials = state.store.credentials(user.id).await?;
    let started = crate::service::passkeys::start_registration(state, user, &credentials)?;
    let ceremony = Some((started.ceremony, started.challenge));
    let (handle, csrf, headers) = with_pending(state, flow, interaction, signin, None, ceremony).await?;
    let f = flow.locale.factors();
    let hidden = vec![("interaction", handle.as_str()), ("csrf_token", csrf.as_str())];
    let mut w = WebauthnForm::new("/oauth2/auth/login/passkey", hidden, &started.options, f, f.passkey_create);
    w.name_label = Some(f.passkey_name);
    w.default_name = f.passkey_default_name;
    let html = pages::render(&PasskeyAddPage {
        brand: &state.settings.branding,
        lang: flow.locale.tag(),
        title: f.passkey_add,
        intro: f.passkey_enrol_intro,
        error,
        w: Some(w),
    })?;
    let target = pages::origin_of(&flow.request.redirect_uri);
    Ok(pages::page_with_script(status, html, target.as_deref(), headers))
}

pub(crate) async fn login_page(
    state: &AppState,
    flow: &Flow,
    interaction: Option<(&str, &Interaction)>,
    error: Option<&'static str>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    // Where passkeys are offered, the page can also sign in without a password: a
    // discoverable passkey's ceremony, started with a sign-in of its own.
    let now = state.now();
    let (handle, csrf, mut headers, options) = if state.passkeys.is_some() {
        let started = crate::service::passkeys::start_authentication(state, &[])?;
        let signin =
            SignIn::start(crate::service::signin::requirement(state, &flow.request, &flow.client, now), None, now);
        let ceremony = Some((started.ceremony, started.challenge));
        let (handle, csrf, headers) = with_pending(state, flow, interaction, signin, None, ceremony).await?;
        (handle, csrf, headers, Some(started.options))
    } else {
        let (handle, csrf, headers) = interaction_for(state, flow, interaction, None).await?;
        (handle, csrf, headers, None)
    };
    let t = flow.locale.texts();
    let f = flow.locale.factors();
    let hidden = vec![("interaction", handle.as_str()), ("csrf_token", csrf.as_str())];
    let w = options.map(|o| {
        let mut w = WebauthnForm::new("/oauth2/auth/login/passkey", hidden, &o, f, f.passkey_sign_in);
        w.secondary = true;
        w
    });
    let scripted = w.is_some();
    let html = pages::render(&LoginPage {
        brand: &state.settings.branding,
        lang: flow.locale.tag(),
        title: t.login_title,
        t,
        client_name: flow.client_name(),
        logo_uri: flow.client.logo_uri.as_deref(),
        error,
        username: flow.request.login_hint.as_deref().unwrap_or(""),
        interaction: &handle,
        csrf_token: &csrf,
        a: flow.locale.account(),
        // Offered only where mail can be sent.
        forgot: state.outbox.is_some(),
        register: state.outbox.is_some() && state.settings.self_registration,
        w,
    })?;
    if status == StatusCode::TOO_MANY_REQUESTS {
        headers.retain(|(n, _)| n != header::SET_COOKIE);
    }
    // Browsers apply form-action to the redirects after a submission too: a login can
    // end in a 303 straight to the client (consent already given).
    let target = pages::origin_of(&flow.request.redirect_uri);
    Ok(if scripted {
        pages::page_with_script(status, html, target.as_deref(), headers)
    } else {
        pages::page(status, html, target.as_deref(), headers)
    })
}

async fn consent_page(
    state: &AppState,
    flow: &Flow,
    interaction: Option<(&str, &Interaction)>,
    session: &Session,
) -> Result<Response, ApiError> {
    let (handle, csrf, headers) = interaction_for(state, flow, interaction, Some(&session.sid)).await?;
    let t = flow.locale.texts();
    let html = pages::render(&ConsentPage {
        brand: &state.settings.branding,
        lang: flow.locale.tag(),
        title: t.consent_title,
        t,
        client_name: flow.client_name(),
        logo_uri: flow.client.logo_uri.as_deref(),
        scopes: flow.request.scope.iter().map(|s| flow.locale.scope_description(s)).collect(),
        interaction: &handle,
        csrf_token: &csrf,
    })?;
    let target = pages::origin_of(&flow.request.redirect_uri);
    Ok(pages::page(StatusCode::OK, html, target.as_deref(), headers))
}
