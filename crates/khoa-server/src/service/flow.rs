//! The authorization code flow between the authorization request and the redirect back
//! to the client: who must log in, who must consent, and issuing the code. Shared by
//! the authorize, login, continue and consent handlers.

use crate::app::state::AppState;
use crate::http::cookies;
use crate::http::error::ApiError;
use crate::service::passkeys::Ceremony;
use crate::service::signin::{Pending, SignedIn};
use axum::http::{header, HeaderMap, HeaderName};
use khoa_core::authn::{level_of_amr, proofs_of_amr, Level, Method, Next, Requirement, SignIn};
use khoa_core::authorize::step::{self, Authentication, Signed, Step};
use khoa_core::authorize::AuthorizeErrorCode;
use khoa_core::code::AuthorizationCode;
use khoa_core::jose::jwt;
use khoa_core::scope::ScopeSet;
use khoa_core::session::{handle_hash, new_handle, Interaction, Session};
use khoa_core::tokens::IdTokenClaims;
use khoa_core::user::User;
use khoa_core::UnixTime;

pub use crate::service::interaction::Flow;

/// How long a user has to log in and consent.
pub const INTERACTION_LIFETIME: i64 = 30 * 60;

/// The active session named by the browser's session cookie.
pub async fn current_session(
    state: &AppState,
    headers: &HeaderMap,
    now: UnixTime,
) -> Result<Option<Session>, ApiError> {
    let Some(handle) = cookies::get(headers, cookies::SESSION_COOKIE) else { return Ok(None) };
    Ok(state.store.session(&handle_hash(&handle)).await?.filter(|s| s.is_active(now)))
}

/// The subject an `id_token_hint` names, if it is one of our ID tokens (its expiry does
/// not matter: OIDC Core §3.1.2.1). `Err` when it is not ours or not a JWT.
pub fn id_token_hint_subject(state: &AppState, hint: &str) -> Result<String, ()> {
    let keys = state.keys.snapshot();
    let (_, claims): (_, IdTokenClaims) = jwt::decode(hint, |kid| keys.key(kid)).map_err(|_| ())?;
    if claims.iss != state.settings.issuer {
        return Err(());
    }
    Ok(claims.sub)
}

/// Takes the next step for a request in a browser with `session`, as
/// `khoa_core::authorize::step` decides it: the login page, the consent page, an error
/// for `prompt=none`, or the code. `logged_in_now` and `interaction` are set when the user
/// has just logged in during this interaction (so `prompt=login` and `max_age` are
/// satisfied).
/// What comes next for an authorization request, as `proceed` decided it; the routes
/// render it (`routes/views.rs`).
pub enum Proceed {
    /// Back to the client with an error (RFC 6749 §4.1.2.1; OIDC Core §3.1.2.6).
    Refuse(AuthorizeErrorCode, &'static str),
    /// A sign-in: from the start, or the step the browser's session still needs.
    SignIn(SignInStep),
    Consent(Session),
    /// The interaction completed already (a second tab, a replayed request).
    Expired,
    /// Back to the client with a code: the response's parameters.
    Code(Vec<(&'static str, String)>),
}

/// The first page of a sign-in.
pub enum SignInStep {
    /// The login form.
    Login,
    /// A session that must be stepped up: the second step, of these methods.
    Factor { signin: SignIn, methods: Vec<Method> },
    /// A session whose person must first set up an authenticator app…
    EnrolTotp { signin: SignIn, user: std::sync::Arc<User> },
    /// …or a passkey (`phr`).
    EnrolPasskey { signin: SignIn, user: std::sync::Arc<User> },
}

pub async fn proceed(
    state: &AppState,
    flow: &Flow,
    session: Option<Session>,
    interaction: Option<(&str, &Interaction)>,
    logged_in_now: bool,
) -> Result<Proceed, ApiError> {
    let now = state.now();
    let r = &flow.request;
    let hint_subject = match &r.id_token_hint {
        Some(hint) => match id_token_hint_subject(state, hint) {
            Ok(sub) => Some(sub),
            Err(()) => {
                return Ok(Proceed::Refuse(
                    AuthorizeErrorCode::InvalidRequest,
                    "id_token_hint is not an ID token issued by this server",
                ));
            }
        },
        None => None,
    };
    let user = match &session {
        Some(s) => state.users.get(state.store.as_ref(), s.user_id).await?,
        None => None,
    };
    let subject = user.as_ref().map(|u| u.subject());
    let requirement = crate::service::signin::requirement(state, r, &flow.client, now);
    let signed = match (&session, &subject) {
        (Some(s), Some(subject)) => {
            let level = level_of_amr(&s.amr).unwrap_or(Level::SingleFactor);
            Some(Signed { subject, auth_time: s.auth_time, level })
        }
        _ => None,
    };
    let authentication = Authentication {
        prompt: r.prompt,
        max_age: r.max_age,
        hint_subject: hint_subject.as_deref(),
        session: signed,
        required: requirement.level,
        logged_in_now,
    };
    let step = match step::authentication(&authentication, now) {
        Some(step) => step,
        None => {
            let granted = match (&user, step::consent_on_record_matters(r.prompt, flow.client.skip_consent)) {
                (Some(user), true) => state.store.consent(user.id, &flow.client.client_id).await?,
                _ => None,
            };
            let granted = granted.and_then(|g| ScopeSet::parse(&g).ok());
            step::consent(r.prompt, flow.client.skip_consent, &r.scope, granted.as_ref())
        }
    };
    let (session, user) = match (step, session, user) {
        (Step::Refuse(code, description), ..) => return Ok(Proceed::Refuse(code, description)),
        (Step::Login, session, user) => {
            // The session's own person is asked only for what is missing (a step-up);
            // an id_token_hint naming somebody else starts afresh.
            let same_person = hint_subject.is_none() || hint_subject.as_deref() == subject.as_deref();
            let known = session.zip(user).filter(|_| same_person);
            return Ok(Proceed::SignIn(sign_in_step(state, known, requirement).await?));
        }
        (Step::Consent, Some(session), _) => return Ok(Proceed::Consent(session)),
        (Step::Issue, Some(session), Some(user)) => (session, user),
        _ => return Err(ApiError::Internal("an authorization step without its session".into())),
    };
    if let Some((handle, i)) = interaction {
        // Completes once, even if the form is submitted twice (a sealed interaction
        // never gets here without a session: it has become a row by then).
        if crate::service::interaction::is_sealed(handle) || !state.store.delete_interaction(&i.id_hash).await? {
            return Ok(Proceed::Expired);
        }
    }
    Ok(Proceed::Code(issue_code(state, flow, &session, &user).await?))
}

/// The first step of a sign-in: for the session's own person (`known`), the step a
/// step-up still needs, as the engine decides it from the session's `amr`; else the
/// login form.
async fn sign_in_step(
    state: &AppState,
    known: Option<(Session, std::sync::Arc<User>)>,
    requirement: Requirement,
) -> Result<SignInStep, ApiError> {
    let now = state.now();
    let Some((session, user)) = known else { return Ok(SignInStep::Login) };
    let proofs = proofs_of_amr(&session.amr, session.auth_time);
    let signin = SignIn::start(requirement, Some((user.id, &proofs)), now);
    if signin.user_id.is_none() {
        return Ok(SignInStep::Login);
    }
    let (enrolled, _) = crate::service::signin::enrolled(state.store.as_ref(), &user).await?;
    Ok(match signin.next(Some(&enrolled), now) {
        Next::Continue(methods)
            if methods.iter().any(|m| matches!(m, Method::Totp | Method::RecoveryCode | Method::Passkey)) =>
        {
            SignInStep::Factor { signin, methods }
        }
        Next::Enrol(methods) if methods.contains(&Method::Totp) => SignInStep::EnrolTotp { signin, user },
        Next::Enrol(methods) if methods.contains(&Method::Passkey) && state.passkeys.is_some() => {
            SignInStep::EnrolPasskey { signin, user }
        }
        _ => SignInStep::Login,
    })
}

/// The interaction for the request (the one in progress, or a new one) with its cookie,
/// bound to the session `sid` when given.
///
/// Until somebody logs in, an interaction is stored nowhere: its handle is the pending
/// request sealed under the master key (`crate::service::interaction::seal`), so anonymous
/// requests, however many, cannot grow the database. Once a login or a session exists,
/// it is a row of its own (a new handle and anti-forgery token), which completes once.
pub async fn interaction_for(
    state: &AppState,
    flow: &Flow,
    existing: Option<(&str, &Interaction)>,
    sid: Option<&str>,
) -> Result<(String, String, Vec<(HeaderName, String)>), ApiError> {
    if let Some((handle, i)) = existing {
        let sealed = crate::service::interaction::is_sealed(handle);
        if !sealed {
            if let Some(sid) = sid {
                state.store.set_interaction_session(&i.id_hash, sid).await?;
            }
        }
        if !sealed || sid.is_none() {
            return Ok((handle.to_string(), i.csrf_token.clone(), vec![]));
        }
    }
    let now = state.now();
    let csrf_token = new_handle();
    let request = khoa_core::session::Pending::Authorization(flow.request.clone()).to_json();
    let (created_at, expires_at) = (now, now + INTERACTION_LIFETIME);
    let handle = match sid {
        None => crate::service::interaction::seal(state, &csrf_token, &request, created_at, expires_at)?,
        Some(sid) => {
            let handle = new_handle();
            let interaction = Interaction {
                id_hash: handle_hash(&handle),
                csrf_token: csrf_token.clone(),
                request,
                sid: Some(sid.to_string()),
                created_at,
                expires_at,
            };
            state.store.insert_interaction(&interaction).await?;
            handle
        }
    };
    let cookie = cookies::set(
        &cookies::interaction_cookie_name(&handle_hash(&handle)),
        &csrf_token,
        "/oauth2/auth",
        INTERACTION_LIFETIME,
        state.settings.secure_cookies(),
    );
    Ok((handle, csrf_token, vec![(header::SET_COOKIE, cookie)]))
}

/// The interaction's handle, token and cookies, with the half-finished sign-in sealed
/// in its own cookie, bound to this interaction.
pub async fn with_pending(
    state: &AppState,
    flow: &Flow,
    interaction: Option<(&str, &Interaction)>,
    signin: SignIn,
    enrol_secret: Option<String>,
    ceremony: Option<(Ceremony, String)>,
) -> Result<(String, String, Vec<(HeaderName, String)>), ApiError> {
    let (handle, csrf, mut headers) = interaction_for(state, flow, interaction, None).await?;
    let pending = Pending { signin, interaction: handle_hash(&handle), enrol_secret, ceremony };
    headers.push((header::SET_COOKIE, pending.cookie(state, state.now())?));
    Ok((handle, csrf, headers))
}

/// RFC 6749 §4.1.2: a single-use code bound to the client, redirect URI, PKCE challenge,
/// nonce, scope, session and authentication time; 303 to the client.
/// RFC 6749 §4.1.2: the parameters of the authorization response.
pub async fn issue_code(
    state: &AppState,
    flow: &Flow,
    session: &Session,
    user: &User,
) -> Result<Vec<(&'static str, String)>, ApiError> {
    let now = state.now();
    // The account page shows when each session was last used, to the minute: no
    // write for a session used in the last minute.
    if now - session.last_used_at >= khoa_core::session::LAST_USE_RESOLUTION {
        state.store.touch_session(&session.sid, now).await?;
    }
    let handle = new_handle();
    let lifetime =
        crate::service::issue::lifetime(state, &flow.client, khoa_core::client::TokenKind::AuthorizationCode);
    let r = &flow.request;
    state
        .store
        .insert_code(&AuthorizationCode {
            code_hash: handle_hash(&handle),
            client_id: flow.client.client_id.clone(),
            user_id: user.id,
            sid: session.sid.clone(),
            redirect_uri: r.redirect_uri.clone(),
            redirect_uri_sent: r.redirect_uri_sent,
            scope: r.scope.to_string(),
            nonce: r.nonce.clone(),
            code_challenge: r.code_challenge.as_ref().map(|c| c.as_str().to_string()),
            auth_time: session.auth_time,
            amr: session.amr.clone(),
            created_at: now,
            expires_at: now + lifetime,
        })
        .await?;
    let mut params = vec![("code", handle)];
    if let Some(s) = &r.state {
        params.push(("state", s.clone()));
    }
    params.push(("iss", state.settings.issuer.clone()));
    Ok(params)
}

/// Where a session is opened from, as the account page shows it.
#[derive(Debug, Clone, Default)]
pub struct Device {
    pub user_agent: Option<String>,
    pub address: Option<String>,
}

impl Device {
    pub fn of(headers: &axum::http::HeaderMap, address: std::net::IpAddr) -> Self {
        let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_string);
        Self { user_agent, address: Some(address.to_string()) }
    }
}

/// A new SSO session for `user`, with its cookie. The previous session of this browser,
/// if any, is logged out exactly as by the logout endpoint: its tokens (but those
/// granted offline_access) are revoked and its clients get back-channel notices, so no
/// token outlives the session it was issued in (the session id rotates at every login,
/// and a new login may be another user's).
async fn start_session(
    state: &AppState,
    signed: &SignedIn,
    previous: Option<&Session>,
    device: Device,
) -> Result<(Session, (HeaderName, String)), ApiError> {
    let now = state.now();
    let user = &signed.user;
    if let Some(old) = previous {
        // Front-channel iframes need a page; the login ends in a redirect instead.
        let replaced = crate::service::logout::LogoutReason::Replaced;
        crate::service::logout::end_session(state, old, replaced, None, None).await?;
    }
    let handle = new_handle();
    let session = Session {
        id_hash: handle_hash(&handle),
        sid: khoa_core::random::random_token::<16>(),
        user_id: user.id,
        auth_time: signed.auth_time,
        amr: signed.amr.clone(),
        created_at: now,
        expires_at: now + state.settings.lifetimes.session,
        ended_at: None,
        device: device.user_agent.as_deref().and_then(khoa_core::session::device_of),
        address: device.address,
        last_used_at: now,
    };
    state.store.insert_session(&session).await?;
    let cookie = cookies::set(
        cookies::SESSION_COOKIE,
        &handle,
        "/",
        state.settings.lifetimes.session,
        state.settings.secure_cookies(),
    );
    Ok((session, (header::SET_COOKIE, cookie)))
}

/// The browser's session for a completed sign-in: its own session raised in place when
/// this was a step-up of the same person (a new cookie, the same `sid`, so its tokens
/// stay), else a new one.
pub async fn session_for(
    state: &AppState,
    signed: &SignedIn,
    previous: Option<Session>,
    device: Device,
) -> Result<(Session, (HeaderName, String)), ApiError> {
    if let Some(old) = previous.as_ref().filter(|s| s.user_id == signed.user.id) {
        let handle = new_handle();
        let id_hash = handle_hash(&handle);
        if state.store.step_up_session(&old.id_hash, &id_hash, &signed.amr, signed.auth_time).await? {
            let session = Session { id_hash, amr: signed.amr.clone(), auth_time: signed.auth_time, ..old.clone() };
            let lifetime = (session.expires_at - state.now()).max(1);
            let cookie = cookies::set(cookies::SESSION_COOKIE, &handle, "/", lifetime, state.settings.secure_cookies());
            return Ok((session, (header::SET_COOKIE, cookie)));
        }
    }
    start_session(state, signed, previous.as_ref(), device).await
}
