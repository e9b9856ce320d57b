//! The account page at `/`. khoa signs people in to it like to any other client: the
//! built-in public client [`ACCOUNT_CLIENT_ID`] runs the authorization code flow with
//! PKCE against khoa's own authorization endpoint (so throttling, sessions, prompts and
//! logout all apply), and exchanges the code in-process. The page's own cookie names
//! the SSO session it came from; when that session ends, so does the page's sign-in.

use super::{locale, notice, other, query_of};
use crate::app::state::AppState;
use crate::http::error::ApiError;
use crate::http::i18n::Locale;
use crate::http::{cookies, pages};
use crate::service::admin::Who;
use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use khoa_core::account::NewPasswordError;
use khoa_core::audit::{kind, Actor};
use khoa_core::client::{ClientRegistration, GrantType, SecretChoice};
use khoa_core::session::Session;
use khoa_core::user::{Profile, User};
use khoa_core::UnixTime;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// The client the account page signs in as.
pub const ACCOUNT_CLIENT_ID: &str = "khoa-account";
pub const CALLBACK_PATH: &str = "/account/callback";
const ACCOUNT_COOKIE: &str = "khoa_account";
const LOGIN_COOKIE: &str = "khoa_account_login";
/// Associated data of the sealed cookies: one cannot pass for the other.
const SEALED_ACCOUNT: &[u8] = b"khoa account page v1";
const SEALED_LOGIN: &[u8] = b"khoa account login v1";

/// The account page's client, registered (or brought up to date with the issuer) when
/// the page is first opened: public, code flow with PKCE, no consent asked.
pub async fn ensure_account_client(state: &AppState) -> Result<(), ApiError> {
    let redirect_uri = format!("{}{CALLBACK_PATH}", state.settings.issuer.trim_end_matches('/'));
    let cached = state.clients.get(state.store.as_ref(), ACCOUNT_CLIENT_ID).await?;
    if cached.as_ref().is_some_and(|c| c.redirect_uris == [redirect_uri.clone()]) {
        return Ok(());
    }
    let existing = state.store.client(ACCOUNT_CLIENT_ID).await?;
    let mut r = ClientRegistration::new(ACCOUNT_CLIENT_ID);
    r.redirect_uris = vec![redirect_uri];
    r.secret = SecretChoice::Public;
    r.grant_types = Some(vec![GrantType::AuthorizationCode]);
    r.scopes = Some("openid profile email phone".into());
    r.skip_consent = true;
    r.client_name = Some(state.settings.branding.product_name.clone());
    let now = state.now();
    let client = r.register(now).map_err(|e| ApiError::Internal(format!("the account client: {e}")))?.client;
    let event = khoa_core::audit::Event::new(now, kind::CLIENT_CREATED, Actor::System).client(ACCOUNT_CLIENT_ID);
    let outcome = match existing {
        None => state.store.insert_client(&client, &event).await,
        Some(_) => state.store.update_client(&client, None, &event).await.map(drop),
    };
    state.clients.clear();
    match outcome {
        // Another process registered it first.
        Ok(()) | Err(khoa_store::StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What the account page's cookie holds (sealed with the master key).
#[derive(Serialize, Deserialize)]
struct SignedIn {
    sub: i64,
    sid: String,
    csrf: String,
    exp: UnixTime,
}

/// What the sign-in in progress holds until the callback.
#[derive(Serialize, Deserialize)]
struct PendingLogin {
    state: String,
    verifier: String,
    lang: String,
    exp: UnixTime,
}

/// A signed-in visitor of the account page.
pub(super) struct Visitor {
    pub(super) user: Arc<User>,
    pub(super) session: Session,
    pub(super) csrf: String,
}

fn sealed_cookie(state: &AppState, name: &str, value: &str, path: &str, max_age: i64) -> String {
    cookies::set(name, value, path, max_age, state.settings.secure_cookies())
}

fn open<T: for<'de> Deserialize<'de>>(state: &AppState, headers: &HeaderMap, name: &str, ad: &[u8]) -> Option<T> {
    state.master.open_json(ad, &cookies::get(headers, name)?)
}

/// The visitor, if their cookie is ours, unexpired, and its SSO session still active
/// and theirs, and the account enabled.
async fn visitor(state: &AppState, headers: &HeaderMap) -> Result<Option<Visitor>, ApiError> {
    let now = state.now();
    let Some(signed) = open::<SignedIn>(state, headers, ACCOUNT_COOKIE, SEALED_ACCOUNT) else { return Ok(None) };
    if signed.exp <= now {
        return Ok(None);
    }
    let Some(session) = state.store.session_by_sid(&signed.sid).await? else { return Ok(None) };
    if !session.is_active(now) || session.user_id != signed.sub {
        return Ok(None);
    }
    let Some(user) = state.users.get(state.store.as_ref(), signed.sub).await? else { return Ok(None) };
    if user.is_disabled() {
        return Ok(None);
    }
    Ok(Some(Visitor { user, session, csrf: signed.csrf }))
}

/// Starts the code flow: to khoa's authorization endpoint, with PKCE and a state kept
/// in a sealed cookie.
fn sign_in(state: &AppState, locale: Locale) -> Response {
    sign_in_with(state, locale, None)
}

/// The sign-in, asking for a fresh one (`max_age=0`) when the person must prove
/// themselves again before changing how they sign in.
pub(super) fn sign_in_with(state: &AppState, locale: Locale, max_age: Option<i64>) -> Response {
    let now = state.now();
    let pending = PendingLogin {
        state: khoa_core::random::random_token::<16>(),
        verifier: khoa_core::random::random_token::<32>(),
        lang: locale.tag().to_string(),
        exp: now + 600,
    };
    let challenge = khoa_core::pkce::CodeChallenge::s256(&pending.verifier);
    let redirect_uri = format!("{}{CALLBACK_PATH}", state.settings.issuer.trim_end_matches('/'));
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", ACCOUNT_CLIENT_ID)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid profile email phone")
        .append_pair("state", &pending.state)
        .append_pair("code_challenge", challenge.as_str())
        .append_pair("code_challenge_method", "S256")
        .append_pair("ui_locales", locale.tag())
        .extend_pairs(max_age.map(|age| ("max_age", age.to_string())))
        .finish();
    let mut res = Redirect::to(&format!("{}?{query}", khoa_core::discovery::paths::AUTHORIZATION)).into_response();
    let sealed = state.master.seal_json(SEALED_LOGIN, &pending).unwrap_or_default();
    let cookie = sealed_cookie(state, LOGIN_COOKIE, &sealed, "/account", 600);
    if let Ok(v) = cookie.parse() {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// `GET /account/callback`: the authorization response of the account page's sign-in.
pub(crate) async fn callback(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let query = query_of(&uri);
    let pending = open::<PendingLogin>(&state, &headers, LOGIN_COOKIE, SEALED_LOGIN);
    let locale = locale(pending.as_ref().map(|p| p.lang.as_str()), &headers);
    let now = state.now();
    let Some(pending) = pending.filter(|p| p.exp > now) else {
        return Ok(sign_in(&state, locale));
    };
    let state_ok = query.get("state").is_some_and(|s| crate::service::interaction::tokens_match(s, &pending.state));
    let t = locale.texts();
    if !state_ok || query.get("iss").is_some_and(|iss| *iss != state.settings.issuer) {
        return Ok(notice(&state, locale, StatusCode::BAD_REQUEST, t.error_title, t.expired, None));
    }
    let Some(code) = query.get("code") else {
        // The sign-in was refused or abandoned (e.g. access_denied): start again from /.
        let again = format!("/?lang={}", locale.tag());
        return Ok(notice(
            &state,
            locale,
            StatusCode::BAD_REQUEST,
            t.error_title,
            t.expired,
            Some((&again, t.sign_in)),
        ));
    };
    let Some(client) = state.clients.get(state.store.as_ref(), ACCOUNT_CLIENT_ID).await? else {
        return Err(ApiError::Internal("the account client is missing".into()));
    };
    let redirect_uri = format!("{}{CALLBACK_PATH}", state.settings.issuer.trim_end_matches('/'));
    use crate::service::grants::authorization_code::{exchange, CodeExchange, RedirectUri, RefreshPolicy};
    let x = CodeExchange {
        code,
        redirect_uri: RedirectUri::Given(Some(&redirect_uri)),
        code_verifier: Some(&pending.verifier),
        refresh: RefreshPolicy::Standard,
    };
    let Ok(exchanged) = exchange(&state, &client, x).await else {
        return Ok(notice(&state, locale, StatusCode::BAD_REQUEST, t.error_title, t.expired, None));
    };
    let keys = state.keys.snapshot();
    let id_token = exchanged.response.id_token.as_deref().unwrap_or("");
    let claims: Option<khoa_core::tokens::IdTokenClaims> =
        khoa_core::jose::jwt::decode(id_token, |kid| keys.key(kid)).ok().map(|(_, c)| c);
    let Some((sub, sid)) = claims.and_then(|c| Some((c.sub.parse::<i64>().ok()?, c.sid?))) else {
        return Err(ApiError::Internal("the account page's ID token has no sub or sid".into()));
    };
    let signed = SignedIn {
        sub,
        sid,
        csrf: khoa_core::random::random_token::<32>(),
        exp: now + state.settings.lifetimes.session,
    };
    let sealed = state.master.seal_json(SEALED_ACCOUNT, &signed).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut res = Redirect::to(&format!("/?lang={}", locale.tag())).into_response();
    for cookie in [
        sealed_cookie(&state, ACCOUNT_COOKIE, &sealed, "/", state.settings.lifetimes.session),
        sealed_cookie(&state, LOGIN_COOKIE, "", "/account", 0),
    ] {
        if let Ok(v) = cookie.parse() {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(res)
}

struct SessionRow {
    sid: String,
    device: String,
    address: String,
    started: String,
    last_used: String,
    apps: String,
    current: bool,
}

/// An authenticator app or a passkey on the account page.
pub(super) struct FactorRow {
    pub(super) id: i64,
    pub(super) name: String,
    pub(super) added: String,
    pub(super) last_used: String,
}

struct AppRow {
    client_id: String,
    name: String,
    scopes: String,
    granted: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    brand: &'a crate::app::settings::Branding,
    lang: &'static str,
    title: &'static str,
    a: &'static crate::http::account_texts::AccountTexts,
    username: &'a str,
    name: &'a str,
    email: &'a str,
    email_verified: bool,
    phone: &'a str,
    picture: &'a str,
    can_mail: bool,
    csrf_token: &'a str,
    flash: Option<&'static str>,
    error: Option<String>,
    sessions: Vec<SessionRow>,
    apps: Vec<AppRow>,
    f: &'static crate::http::factor_texts::FactorTexts,
    totp: Vec<FactorRow>,
    passkeys: Vec<FactorRow>,
    /// Passkeys can be added here (the issuer is a domain name).
    passkeys_offered: bool,
    /// Unused recovery codes.
    codes_left: usize,
    /// An app or a passkey: recovery codes can be made.
    has_factor: bool,
    /// Offer "sign in again" (a change needs a recent sign-in).
    reauth: bool,
    other_lang: &'static str,
    other_language: &'static str,
}

/// A time as people read it: `2026-12-01 18:20 UTC`.
fn when(t: UnixTime) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", secs / 3600, secs % 3600 / 60)
}

async fn client_name(state: &AppState, client_id: &str) -> String {
    match state.clients.get(state.store.as_ref(), client_id).await {
        Ok(Some(c)) => c.client_name.clone().unwrap_or_else(|| c.client_id.clone()),
        _ => client_id.to_string(),
    }
}

pub(super) async fn account_page(
    state: &AppState,
    v: &Visitor,
    locale: Locale,
    flash: Option<&'static str>,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let a = locale.account();
    let now = state.now();
    let mut sessions = vec![];
    for s in state.store.user_sessions(v.user.id, now).await? {
        let mut apps = vec![];
        for c in s.clients.iter().filter(|c| *c != ACCOUNT_CLIENT_ID) {
            apps.push(client_name(state, c).await);
        }
        let session = s.session;
        sessions.push(SessionRow {
            current: session.sid == v.session.sid,
            device: session.device.clone().unwrap_or_else(|| a.unknown_device.to_string()),
            address: session.address.clone().unwrap_or_default(),
            started: when(session.created_at),
            last_used: when(session.last_used_at.max(session.created_at)),
            apps: apps.join(", "),
            sid: session.sid,
        });
    }
    // This session first.
    sessions.sort_by_key(|s| !s.current);
    let mut apps = vec![];
    for c in state.store.user_consents(v.user.id).await? {
        if c.client_id == ACCOUNT_CLIENT_ID {
            continue;
        }
        let scopes: Vec<String> =
            c.scope.split(' ').filter(|s| *s != "openid").map(|s| locale.scope_description(s)).collect();
        apps.push(AppRow {
            name: client_name(state, &c.client_id).await,
            scopes: scopes.join(", "),
            granted: when(c.granted_at),
            client_id: c.client_id,
        });
    }
    let (other_lang, other_language) = other(locale);
    let f = locale.factors();
    let credentials = state.store.credentials(v.user.id).await?;
    let totp: Vec<FactorRow> = credentials
        .iter()
        .filter(|c| c.method == khoa_core::authn::Method::Totp)
        .map(|c| FactorRow {
            id: c.id,
            name: c.name.clone().unwrap_or_else(|| f.app.to_string()),
            added: when(c.created_at),
            last_used: c.last_used_at.map(when).unwrap_or_else(|| "—".into()),
        })
        .collect();
    let passkeys: Vec<FactorRow> = credentials
        .iter()
        .filter(|c| c.method == khoa_core::authn::Method::Passkey)
        .map(|c| FactorRow {
            id: c.id,
            name: c.name.clone().unwrap_or_else(|| f.passkey_default_name.to_string()),
            added: when(c.created_at),
            last_used: c.last_used_at.map(when).unwrap_or_else(|| "—".into()),
        })
        .collect();
    let method_of = |m| credentials.iter().filter(move |c| c.method == m);
    let codes_left = method_of(khoa_core::authn::Method::RecoveryCode).filter(|c| c.used_at.is_none()).count();
    let has_factor = !totp.is_empty() || method_of(khoa_core::authn::Method::Passkey).next().is_some();
    let reauth = error.as_deref() == Some(f.recent_needed);
    let u = &v.user;
    let html = pages::render(&AccountPage {
        brand: &state.settings.branding,
        lang: locale.tag(),
        title: a.account_title,
        a,
        username: &u.username,
        name: u.name.as_deref().unwrap_or(""),
        email: u.email.as_deref().unwrap_or(""),
        email_verified: u.email_verified,
        phone: u.phone_number.as_deref().unwrap_or(""),
        picture: u.picture.as_deref().unwrap_or(""),
        can_mail: state.outbox.is_some(),
        csrf_token: &v.csrf,
        flash,
        error,
        sessions,
        apps,
        f,
        totp,
        passkeys,
        passkeys_offered: state.passkeys.is_some(),
        codes_left,
        has_factor,
        reauth,
        other_lang,
        other_language,
    })?;
    Ok(pages::page(status, html, None, vec![]))
}

/// The message a `done` key names (a fixed set: nothing from the URL is shown).
fn flash(a: &'static crate::http::account_texts::AccountTexts, done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "saved" => a.saved,
        "verification" => a.verification_sent,
        "password" => a.password_changed,
        "session" => a.session_ended,
        "revoked" => a.revoked,
        "factor_added" => a.factor_added,
        "factor_removed" => a.factor_removed,
        "passkey_added" => a.passkey_added,
        _ => return None,
    })
}

/// `GET /`: the account page, or the sign-in that leads to it.
pub(crate) async fn get(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Result<Response, ApiError> {
    let query = query_of(&uri);
    let locale = locale(query.get("lang").map(String::as_str), &headers);
    match visitor(&state, &headers).await? {
        Some(v) => {
            account_page(
                &state,
                &v,
                locale,
                flash(locale.account(), query.get("done").map(String::as_str)),
                None,
                StatusCode::OK,
            )
            .await
        }
        None => {
            ensure_account_client(&state).await?;
            Ok(sign_in(&state, locale))
        }
    }
}

/// `GET /account/reauthenticate`: a fresh sign-in (every factor again) that leads back
/// to the account page, for a change that needs a recent one.
pub(crate) async fn reauthenticate_get(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let query = query_of(&uri);
    let locale = locale(query.get("lang").map(String::as_str), &headers);
    ensure_account_client(&state).await?;
    Ok(sign_in_with(&state, locale, Some(0)))
}

/// A POST of the account page: the visitor, the form, the page's language and the
/// client's address, once the form's token is checked against the visitor's. Without
/// a visitor the answer is the sign-in; with a forged token, [`super::forged`].
pub(crate) struct Posted {
    pub(super) v: Visitor,
    pub(super) form: HashMap<String, String>,
    pub(super) locale: Locale,
    pub(super) address: std::net::IpAddr,
}

impl axum::extract::FromRequest<AppState> for Posted {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &AppState) -> Result<Self, Response> {
        let (headers, peer, form) = super::read_post(req).await?;
        let locale = locale(form.get("lang").map(String::as_str), &headers);
        let v = match visitor(state, &headers).await {
            Ok(Some(v)) => v,
            Ok(None) => return Err(sign_in(state, locale)),
            Err(e) => return Err(e.into_response()),
        };
        let submitted = form.get("csrf_token").map(String::as_str).unwrap_or("");
        if !crate::service::interaction::tokens_match(submitted, &v.csrf) {
            return Err(super::forged(state, locale));
        }
        let address = crate::http::client_address(&state.settings, peer.ip(), &headers);
        Ok(Self { v, form, locale, address })
    }
}

pub(super) fn done(locale: Locale, what: &str) -> Response {
    Redirect::to(&format!("/?lang={}&done={what}", locale.tag())).into_response()
}

pub(super) fn who(state: &AppState, v: &Visitor, address: std::net::IpAddr) -> Who {
    Who { actor: Actor::User(v.user.id), address: Some(address.to_string()), now: state.now() }
}

/// `POST /account/profile`: name, phone and picture at once. A change of the email
/// address (a new one, or none) needs the current password, checked as a login
/// (throttled), as a password change does: a moment at an unlocked computer must not
/// hand the account's mail, and with it "Forgot password?", to someone else. A new
/// address counts only once verified; the old one is told, with a way to undo it.
pub(crate) async fn profile(State(state): State<AppState>, posted: Posted) -> Result<Response, ApiError> {
    let Posted { v, form, locale, address } = posted;
    let a = locale.account();
    let text = |k: &str| form.get(k).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let current = Profile::of(&v.user);
    let asked_email = text("email");
    let email_changes =
        asked_email.as_deref().map(str::to_lowercase) != current.email.as_deref().map(str::to_lowercase);
    let profile = Profile {
        name: text("name"),
        phone_number: text("phone_number"),
        // A changed phone number is not verified.
        phone_number_verified: current.phone_number_verified && text("phone_number") == current.phone_number,
        picture: text("picture"),
        // Removing the address is allowed; a new one waits for its verification, and
        // until then the old one (and whether it is verified) stays.
        email: if email_changes && asked_email.is_some() { current.email.clone() } else { asked_email.clone() },
        email_verified: current.email_verified && !(email_changes && asked_email.is_none()),
        ..current.clone()
    };
    // The new address must be one too.
    let checked = Profile { email: asked_email.clone(), ..profile.clone() }.validate();
    if let Err(e) = checked {
        let error = Some(format!("{} {e}", a.invalid_input));
        return account_page(&state, &v, locale, None, error, StatusCode::BAD_REQUEST).await;
    }
    if email_changes {
        let password = form.get("current_password").map(String::as_str).unwrap_or("");
        if password.is_empty() {
            let error = Some(a.email_needs_password.to_string());
            return account_page(&state, &v, locale, None, error, StatusCode::BAD_REQUEST).await;
        }
        if let Some(refused) = reauthenticate(&state, &v, password, address, locale).await? {
            return Ok(refused);
        }
    }
    let who = who(&state, &v, address);
    if profile != current {
        match crate::service::admin::users::update(state.store.as_ref(), &v.user, profile, None, &who).await {
            Ok(_) => state.users.clear(),
            Err(e) => {
                let error = Some(format!("{} {e}", a.invalid_input));
                return account_page(&state, &v, locale, None, error, StatusCode::BAD_REQUEST).await;
            }
        }
    }
    match asked_email.filter(|_| email_changes) {
        Some(email) => {
            use crate::service::account::{request_address_change, AddressChange};
            match request_address_change(&state, &v.user, &email, address, locale).await? {
                AddressChange::Throttled { .. } => {
                    let error = Some(a.too_many.to_string());
                    account_page(&state, &v, locale, None, error, StatusCode::TOO_MANY_REQUESTS).await
                }
                // The same page whether or not a mail left: it tells nothing of other accounts.
                AddressChange::Mailed | AddressChange::NotMailed => Ok(done(locale, "verification")),
            }
        }
        None => Ok(done(locale, "saved")),
    }
}

/// The visitor's current password, checked as a login is (throttled, audited): `None`
/// when right, else the page that says why not.
async fn reauthenticate(
    state: &AppState,
    v: &Visitor,
    password: &str,
    address: std::net::IpAddr,
    locale: Locale,
) -> Result<Option<Response>, ApiError> {
    let a = locale.account();
    let origin = khoa_core::throttle::LoginOrigin::Browser { address, device: None };
    // The password step of the engine, as at sign-in. The session already did the rest
    // of its sign-in: that the password is right is what is asked here, and whatever
    // the engine would ask next (a second factor) the session has proven.
    use crate::service::signin::{with_password, Outcome};
    let now = state.now();
    let single = khoa_core::authn::Requirement { level: khoa_core::authn::Level::SingleFactor, not_before: None };
    let start = khoa_core::authn::SignIn::start(single, None, now);
    Ok(match with_password(state, &start, &v.user.username, password, origin, ACCOUNT_CLIENT_ID).await? {
        Outcome::Done(_) | Outcome::Continue { .. } | Outcome::Enrol { .. } => None,
        Outcome::Blocked { .. } => {
            let error = Some(locale.texts().throttled.to_string());
            Some(account_page(state, v, locale, None, error, StatusCode::TOO_MANY_REQUESTS).await?)
        }
        Outcome::Failed | Outcome::Disabled | Outcome::Replayed | Outcome::Denied(_) => {
            Some(account_page(state, v, locale, None, Some(a.wrong_password.into()), StatusCode::BAD_REQUEST).await?)
        }
    })
}

/// `POST /account/password`: the current password (checked as a login, throttled),
/// then the new one twice; every other session ends.
pub(crate) async fn password(State(state): State<AppState>, posted: Posted) -> Result<Response, ApiError> {
    let Posted { v, form, locale, address } = posted;
    let a = locale.account();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if let Err(e) = khoa_core::account::check_new_password(field("password"), field("confirmation")) {
        let message = match e {
            NewPasswordError::Mismatch => a.password_mismatch,
            NewPasswordError::Rules => a.password_rules,
        };
        return account_page(&state, &v, locale, None, Some(message.into()), StatusCode::BAD_REQUEST).await;
    }
    if let Some(refused) = reauthenticate(&state, &v, field("current_password"), address, locale).await? {
        return Ok(refused);
    }
    let new_hash = crate::service::admin::users::hash_new_password(&state.passwords, field("password").to_string())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let who = who(&state, &v, address);
    let keep_until = crate::service::logout::keep_deliveries_until(&state.settings, who.now);
    let mut event = who.event(kind::USER_PASSWORD_CHANGED);
    event.user_id = Some(v.user.id);
    let (user, change) = (khoa_store::UserRef::Id(v.user.id), khoa_store::UserChange::Password { hash: new_hash });
    state.store.end_user_sessions(user, change, Some(&v.session.sid), who.now, keep_until, &event).await?;
    state.users.clear();
    Ok(done(locale, "password"))
}

/// Cookies that end the account page's sign-in and this browser's SSO session.
fn signed_out(state: &AppState) -> Vec<(HeaderName, String)> {
    [
        sealed_cookie(state, ACCOUNT_COOKIE, "", "/", 0),
        cookies::set(cookies::SESSION_COOKIE, "", "/", 0, state.settings.secure_cookies()),
    ]
    .into_iter()
    .map(|c| (header::SET_COOKIE, c))
    .collect()
}

fn signed_out_page(state: &AppState, locale: Locale, message: &str) -> Response {
    let a = locale.account();
    let link = format!("/?lang={}", locale.tag());
    let mut res =
        notice(state, locale, StatusCode::OK, locale.texts().logged_out_title, message, Some((&link, a.go_to_account)));
    for (name, value) in signed_out(state) {
        if let Ok(v) = value.parse() {
            res.headers_mut().append(name, v);
        }
    }
    res
}

/// `POST /account/sessions/end`: one of the visitor's own sessions ends (its clients
/// get their back-channel notices); this one too, if it is the one named.
pub(crate) async fn end_session(State(state): State<AppState>, posted: Posted) -> Result<Response, ApiError> {
    let Posted { v, form, locale, address } = posted;
    let sid = form.get("sid").map(String::as_str).unwrap_or("");
    let now = state.now();
    // Only the visitor's own, active sessions: another's sid is as good as none.
    let Some(session) = state.store.session_by_sid(sid).await?.filter(|s| s.user_id == v.user.id && s.is_active(now))
    else {
        return Ok(done(locale, "session"));
    };
    let reason = crate::service::logout::LogoutReason::AccountPage;
    crate::service::logout::end_session(&state, &session, reason, Some(ACCOUNT_CLIENT_ID), Some(address.to_string()))
        .await?;
    if session.sid == v.session.sid {
        return Ok(signed_out_page(&state, locale, locale.texts().logged_out_text));
    }
    Ok(done(locale, "session"))
}

/// `POST /account/sessions/end-all`: every session of the visitor ends and every
/// token of theirs is revoked, with back-channel notices to the applications.
pub(crate) async fn end_all(State(state): State<AppState>, posted: Posted) -> Result<Response, ApiError> {
    let Posted { v, locale, address, .. } = posted;
    let who = who(&state, &v, address);
    let user = khoa_store::UserRef::Id(v.user.id);
    crate::service::admin::users::end_sessions(
        state.store.as_ref(),
        &state.settings,
        user,
        khoa_store::UserChange::None,
        &who,
    )
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(signed_out_page(&state, locale, locale.account().signed_out_everywhere))
}

/// `POST /account/consents/revoke`: an application's access ends: its consent is
/// forgotten (it asks again next time) and its tokens for the visitor are revoked.
pub(crate) async fn revoke_consent(State(state): State<AppState>, posted: Posted) -> Result<Response, ApiError> {
    let Posted { v, form, locale, address } = posted;
    let client_id = form.get("client_id").map(String::as_str).unwrap_or("");
    if client_id.is_empty() || client_id == ACCOUNT_CLIENT_ID {
        return Ok(done(locale, "revoked"));
    }
    let who = who(&state, &v, address);
    let mut event = who.event(kind::CONSENT_REVOKED).client(client_id);
    event.user_id = Some(v.user.id);
    state.store.revoke_consent(v.user.id, client_id, who.now, &event).await?;
    Ok(done(locale, "revoked"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_read_as_dates() {
        assert_eq!(super::when(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::when(1_796_148_000), "2026-12-01 18:00 UTC");
        assert_eq!(super::when(951_782_400), "2000-02-29 00:00 UTC");
    }
}
