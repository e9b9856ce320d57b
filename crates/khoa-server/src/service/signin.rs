//! Signing a person in, one method at a time, as the engine (`khoa_core::authn`)
//! decides. Each credential handler here checks one thing (a password, an app's code,
//! a recovery code), throttled like a password, and hands the engine a proof; the
//! engine answers what comes next, and this returns it as an [`Outcome`] that the
//! routes render (the login page, the account page, the TCONNECT API).
//!
//! A half-finished sign-in is a [`Pending`]: the engine's state sealed under the master
//! key in a cookie of its own, bound to the interaction it belongs to. Another browser
//! has no cookie; a form posted for a later step without it, or with one of another
//! interaction, is refused; and the state cannot be made or altered.

use crate::app::state::AppState;
use crate::http::error::ApiError;
use crate::service::password_login::{password_login, LoginOutcome};
use khoa_core::audit::{kind, Actor, Event};
use khoa_core::authn::{Asks, Denied, Enrolled, Level, Method, Next, Proof, Requirement, SignIn};
use khoa_core::authorize::AuthorizationRequest;
use khoa_core::client::Client;
use khoa_core::throttle::{LoginOrigin, Reservation};
use khoa_core::totp::CodeCheck;
use khoa_core::user::User;
use khoa_core::UnixTime;
use khoa_store::{Credential, CredentialStore};

pub use crate::service::passkeys::Ceremony;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A sign-in that reached what it needed: what the session and the ID token say.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: Box<User>,
    pub level: Level,
    pub amr: Vec<String>,
    pub auth_time: UnixTime,
}

/// What a step of a sign-in came to.
pub enum Outcome {
    Done(SignedIn),
    /// Ask for one of `methods` next; keep `pending`.
    Continue {
        user: Box<User>,
        methods: Vec<Method>,
        pending: SignIn,
    },
    /// The person must set up one of `methods` before they are signed in (their first
    /// factor is proven; a policy asks for a second they do not have).
    Enrol {
        user: Box<User>,
        methods: Vec<Method>,
        pending: SignIn,
    },
    /// Too many failures: refused without checking.
    Blocked {
        retry_after: i64,
    },
    /// A wrong password or code.
    Failed,
    /// A right app code already used (RFC 6238 §5.2): the person waits for the next.
    Replayed,
    /// The password was right, but the account is disabled.
    Disabled,
    Denied(Denied),
}

/// What the request, the client and the server's policy require of a sign-in started
/// at `now`.
pub fn requirement(state: &AppState, request: &AuthorizationRequest, client: &Client, now: UnixTime) -> Requirement {
    let asks = Asks {
        acr_values: request.acr_values.as_deref(),
        max_age: request.max_age,
        prompt_login: request.prompt.login,
        require_mfa: policy_requires_mfa(state, client),
        passkeys: state.passkeys.is_some(),
    };
    Requirement::of(&asks, now)
}

/// `accounts.require_mfa` or the client's `--require-mfa`.
pub fn policy_requires_mfa(state: &AppState, client: &Client) -> bool {
    state.settings.require_mfa || client.require_mfa
}

/// The methods `user` has set up, and their credentials.
pub async fn enrolled(store: &dyn CredentialStore, user: &User) -> Result<(Enrolled, Vec<Credential>), ApiError> {
    let credentials = store.credentials(user.id).await?;
    let has = |m: Method| credentials.iter().any(|c| c.method == m && c.used_at.is_none());
    let enrolled = Enrolled {
        password: user.password_hash.is_some(),
        totp: has(Method::Totp),
        passkeys: has(Method::Passkey),
        recovery_codes: has(Method::RecoveryCode),
    };
    Ok((enrolled, credentials))
}

/// The methods a person can enrol here, of those the engine names.
fn enrollable(state: &AppState, methods: Vec<Method>) -> Vec<Method> {
    methods.into_iter().filter(|m| *m == Method::Totp || (*m == Method::Passkey && state.passkeys.is_some())).collect()
}

/// What the engine says of `signin` for `user` at `now`, as an outcome (and audited:
/// a completed sign-in, or a step passed).
async fn decide(
    state: &AppState,
    user: Box<User>,
    signin: SignIn,
    enrolled: &Enrolled,
    origin: &LoginOrigin<'_>,
    client_id: &str,
    now: UnixTime,
) -> Result<Outcome, ApiError> {
    let outcome = match signin.next(Some(enrolled), now) {
        Next::Success { level, amr, auth_time } => {
            let amr: Vec<String> = amr.into_iter().map(String::from).collect();
            Outcome::Done(SignedIn { user, level, amr, auth_time })
        }
        Next::Continue(methods) => Outcome::Continue { user, methods, pending: signin },
        Next::Enrol(methods) => match enrollable(state, methods) {
            methods if methods.is_empty() => Outcome::Denied(Denied::NoMethod),
            methods => Outcome::Enrol { user, methods, pending: signin },
        },
        Next::Denied(d) => Outcome::Denied(d),
    };
    let (event_kind, user_id, detail) = match &outcome {
        Outcome::Done(s) => (kind::LOGIN_SUCCEEDED, s.user.id, json!({ "amr": s.amr, "acr": s.level.acr() })),
        Outcome::Continue { user, methods, .. } | Outcome::Enrol { user, methods, .. } => {
            let next: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
            let enrol = matches!(outcome, Outcome::Enrol { .. });
            (kind::LOGIN_STEP, user.id, json!({ "next": next, "enrol": enrol }))
        }
        _ => return Ok(outcome),
    };
    let mut event = attempt_event(event_kind, user_id, origin, client_id, now).detail(detail);
    event.actor = Actor::User(user_id);
    state.store.record(&event).await?;
    Ok(outcome)
}

/// The first step with a password (the login page, the TCONNECT login, the account
/// page's re-authentication).
pub async fn with_password(
    state: &AppState,
    signin: &SignIn,
    username: &str,
    password: &str,
    origin: LoginOrigin<'_>,
    client_id: &str,
) -> Result<Outcome, ApiError> {
    let user = match password_login(state, username, password, origin, client_id).await? {
        LoginOutcome::Blocked { retry_after } => return Ok(Outcome::Blocked { retry_after }),
        LoginOutcome::Failed => return Ok(Outcome::Failed),
        LoginOutcome::Disabled => return Ok(Outcome::Disabled),
        LoginOutcome::Succeeded(user) => user,
    };
    let now = state.now();
    let (enrolled, _) = enrolled(state.store.as_ref(), &user).await?;
    match signin.prove(user.id, Proof::of(Method::Password, now), &enrolled, now) {
        Ok(next) => decide(state, user, next, &enrolled, &origin, client_id, now).await,
        Err(d) => Ok(Outcome::Denied(d)),
    }
}

/// A later step with a code: an authenticator app's (`Method::Totp`) or a recovery
/// code. Throttled with the person's password attempts: a wrong code counts as a wrong
/// password.
pub async fn with_code(
    state: &AppState,
    signin: &SignIn,
    method: Method,
    code: &str,
    origin: LoginOrigin<'_>,
    client_id: &str,
) -> Result<Outcome, ApiError> {
    let now = state.now();
    // Asked for now? Checked before the code, so that nothing is learnt of a code
    // posted out of turn.
    let asked = |next: &Next| matches!(next, Next::Continue(methods) if methods.contains(&method));
    let (user, enrolled, credentials) = match person_of(state, signin, asked, now).await? {
        Ok(found) => found,
        Err(outcome) => return Ok(outcome),
    };
    let keys = state.settings.login_throttle.keys(&user.username, origin);
    if let Reservation::Blocked { until } = state.store.reserve_login_attempt(&keys, now).await? {
        state.metrics.login_throttled.inc();
        let retry_after = (until - now).max(1);
        let event = attempt_event(kind::LOGIN_THROTTLED, user.id, &origin, client_id, now)
            .detail(json!({ "method": method.as_str(), "retry_after": retry_after }));
        state.store.record(&event).await?;
        return Ok(Outcome::Blocked { retry_after });
    }
    let check = match method {
        Method::Totp => check_totp(state, &user, &credentials, code, now).await?,
        Method::RecoveryCode => check_recovery_code(state, &user, code, client_id, now).await?,
        Method::Password | Method::Passkey => CodeCheck::Wrong,
    };
    if !matches!(check, CodeCheck::Accepted { .. }) {
        state.metrics.login_failures.inc();
        let reason = if check == CodeCheck::Replayed { "replayed_code" } else { "wrong_code" };
        let event = attempt_event(kind::LOGIN_FAILED, user.id, &origin, client_id, now)
            .detail(json!({ "method": method.as_str(), "reason": reason }));
        state.store.record(&event).await?;
        return Ok(if check == CodeCheck::Replayed { Outcome::Replayed } else { Outcome::Failed });
    }
    state.store.settle_login_success(&keys, now).await?;
    match signin.prove(user.id, Proof::of(method, now), &enrolled, now) {
        // A recovery code spent leaves the person with fewer: `decide` reads them anew.
        Ok(next) => {
            let (enrolled, _) = self::enrolled(state.store.as_ref(), &user).await?;
            decide(state, Box::new(user), next, &enrolled, &origin, client_id, now).await
        }
        Err(d) => Ok(Outcome::Denied(d)),
    }
}

/// The person a later step of `signin` is for, with what they have enrolled, when the
/// engine asks now for what `asked` accepts; else the outcome that says why not (nobody
/// named, gone, disabled, the sign-in expired, or a step out of turn).
async fn person_of(
    state: &AppState,
    signin: &SignIn,
    asked: impl Fn(&Next) -> bool,
    now: UnixTime,
) -> Result<Result<(User, Enrolled, Vec<Credential>), Outcome>, ApiError> {
    let Some(user_id) = signin.user_id else { return Ok(Err(Outcome::Denied(Denied::NotAsked))) };
    let Some(user) = state.store.user_by_id(user_id).await? else { return Ok(Err(Outcome::Denied(Denied::NoMethod))) };
    if user.is_disabled() {
        return Ok(Err(Outcome::Disabled));
    }
    let (enrolled, credentials) = enrolled(state.store.as_ref(), &user).await?;
    match signin.next(Some(&enrolled), now) {
        next if asked(&next) => Ok(Ok((user, enrolled, credentials))),
        Next::Denied(d) => Ok(Err(Outcome::Denied(d))),
        _ => Ok(Err(Outcome::Denied(Denied::NotAsked))),
    }
}

/// An audit event of a sign-in step of `user_id`, with where it came from.
fn attempt_event(kind: &'static str, user_id: i64, origin: &LoginOrigin<'_>, client_id: &str, now: UnixTime) -> Event {
    let mut event = crate::service::password_login::attempt_event(kind, origin, client_id, now);
    event.user_id = Some(user_id);
    event
}

/// An app's code against the person's authenticator app: accepted once per time step,
/// the step stored by compare-and-swap so that of two uses at once one wins.
async fn check_totp(
    state: &AppState,
    user: &User,
    credentials: &[Credential],
    code: &str,
    now: UnixTime,
) -> Result<CodeCheck, ApiError> {
    for c in credentials.iter().filter(|c| c.method == Method::Totp) {
        let Some(secret) = open_totp_secret(state, user.id, &c.data) else {
            tracing::warn!(user_id = user.id, credential = c.id, "an authenticator app's secret cannot be opened");
            continue;
        };
        let last = u64::try_from(c.counter).ok().filter(|s| *s > 0);
        match khoa_core::totp::check(&secret, code, now, last) {
            CodeCheck::Accepted { step } => {
                let step = i64::try_from(step).unwrap_or(i64::MAX);
                return Ok(if state.store.swap_counter(c.id, c.counter, step, now).await? {
                    CodeCheck::Accepted { step: step as u64 }
                } else {
                    CodeCheck::Replayed
                });
            }
            CodeCheck::Replayed => return Ok(CodeCheck::Replayed),
            CodeCheck::Wrong => {}
        }
    }
    Ok(CodeCheck::Wrong)
}

async fn check_recovery_code(
    state: &AppState,
    user: &User,
    code: &str,
    client_id: &str,
    now: UnixTime,
) -> Result<CodeCheck, ApiError> {
    let Some(hash) = khoa_core::recovery::code_hash(code) else { return Ok(CodeCheck::Wrong) };
    let mut event = Event::new(now, kind::RECOVERY_CODE_USED, Actor::User(user.id)).client(client_id);
    event.user_id = Some(user.id);
    Ok(if state.store.use_recovery_code(user.id, &hash, now, &event).await? {
        CodeCheck::Accepted { step: 0 }
    } else {
        CodeCheck::Wrong
    })
}

/// An authenticator app's secret is kept sealed under the master key, bound to its
/// owner: a row copied to another account does not open.
const TOTP_AAD: &str = "khoa totp secret v1";

pub fn seal_totp_secret(state: &AppState, user_id: i64, secret: &[u8]) -> Result<String, ApiError> {
    let aad = format!("{TOTP_AAD} {user_id}");
    state.master.seal_text(aad.as_bytes(), secret).map_err(|e| ApiError::Internal(e.to_string()))
}

fn open_totp_secret(state: &AppState, user_id: i64, sealed: &str) -> Option<Vec<u8>> {
    let aad = format!("{TOTP_AAD} {user_id}");
    state.master.open_text(aad.as_bytes(), sealed).ok()
}

/// A half-finished sign-in, kept sealed in a cookie between its steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub signin: SignIn,
    /// The interaction (`id_hash`) it belongs to: it continues that one only.
    pub interaction: String,
    /// An authenticator app being set up during the sign-in: its secret (base32),
    /// until a code confirms it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrol_secret: Option<String>,
    /// A passkey ceremony the page started, and its challenge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceremony: Option<(crate::service::passkeys::Ceremony, String)>,
}

/// The cookie of a half-finished sign-in (on the authorization paths only).
pub const PENDING_COOKIE: &str = "khoa_signin";
const PENDING_AAD: &[u8] = b"khoa sign-in v1";

impl Pending {
    /// The `Set-Cookie` value that keeps it for the rest of its step's lifetime.
    pub fn cookie(&self, state: &AppState, now: UnixTime) -> Result<String, ApiError> {
        let sealed = state.master.seal_json(PENDING_AAD, self).map_err(|e| ApiError::Internal(e.to_string()))?;
        let max_age = (self.signin.expires_at - now).max(1);
        Ok(crate::http::cookies::set(PENDING_COOKIE, &sealed, "/oauth2/auth", max_age, state.settings.secure_cookies()))
    }

    /// The `Set-Cookie` value that ends it.
    pub fn cleared(state: &AppState) -> String {
        crate::http::cookies::set(PENDING_COOKIE, "", "/oauth2/auth", 0, state.settings.secure_cookies())
    }

    /// This browser's pending sign-in for the interaction `interaction` (its
    /// `id_hash`), if it is ours and unexpired at `now`.
    pub fn open(state: &AppState, headers: &axum::http::HeaderMap, interaction: &str, now: UnixTime) -> Option<Self> {
        let sealed = crate::http::cookies::get(headers, PENDING_COOKIE).filter(|c| c.len() <= 8192)?;
        let pending: Self = state.master.open_json(PENDING_AAD, &sealed)?;
        let same = crate::service::interaction::tokens_match(&pending.interaction, interaction);
        (same && now < pending.signin.expires_at).then_some(pending)
    }
}

/// What confirming a new authenticator app came to.
pub enum Added {
    /// Stored. `codes`: a first set of recovery codes, made with the person's first
    /// second factor, to show once.
    Added {
        codes: Option<Vec<String>>,
    },
    Wrong,
}

/// Stores the authenticator app of `secret` for `user` if `code` is one of its codes
/// now (the step it was accepted at is stored, so the same code does not sign in
/// after), with a first set of recovery codes when the person has none; audited.
pub async fn add_totp(
    state: &AppState,
    user: &User,
    secret: &[u8],
    code: &str,
    actor: Actor,
    now: UnixTime,
) -> Result<Added, ApiError> {
    let CodeCheck::Accepted { step } = khoa_core::totp::check(secret, code, now, None) else {
        return Ok(Added::Wrong);
    };
    let credential = khoa_store::NewCredential {
        user_id: user.id,
        method: Method::Totp,
        name: None,
        lookup: None,
        data: seal_totp_secret(state, user.id, secret)?,
        counter: i64::try_from(step).unwrap_or(i64::MAX),
        created_at: now,
    };
    let mut event = Event::new(now, kind::CREDENTIAL_ADDED, actor.clone()).detail(json!({ "method": "totp" }));
    event.user_id = Some(user.id);
    state.store.insert_credential(&credential, &event).await?;
    let (enrolled, _) = enrolled(state.store.as_ref(), user).await?;
    let codes = if enrolled.recovery_codes { None } else { Some(new_recovery_codes(state, user, actor, now).await?) };
    Ok(Added::Added { codes })
}

/// A new set of recovery codes for `user` (the old set void), stored hashed; the codes
/// are returned to be shown once.
pub async fn new_recovery_codes(
    state: &AppState,
    user: &User,
    actor: Actor,
    now: UnixTime,
) -> Result<Vec<String>, ApiError> {
    let codes = khoa_core::recovery::new_codes();
    let hashes: Vec<String> = codes.iter().filter_map(|c| khoa_core::recovery::code_hash(c)).collect();
    let mut event = Event::new(now, kind::RECOVERY_CODES_CREATED, actor).detail(json!({ "count": hashes.len() }));
    event.user_id = Some(user.id);
    state.store.replace_recovery_codes(user.id, &hashes, now, &event).await?;
    Ok(codes)
}

/// The sign-in's enrolment step: the person the sign-in names sets up the
/// authenticator app of `secret` (shown to them in this sign-in), confirmed by `code`;
/// throttled as codes are. With it, the sign-in goes on (`Outcome`), and the recovery
/// codes made with it are returned to be shown once.
pub async fn enrol_totp(
    state: &AppState,
    signin: &SignIn,
    secret: &[u8],
    code: &str,
    origin: LoginOrigin<'_>,
    client_id: &str,
) -> Result<(Outcome, Option<Vec<String>>), ApiError> {
    let now = state.now();
    let asked = |next: &Next| matches!(next, Next::Enrol(methods) if methods.contains(&Method::Totp));
    let user = match person_of(state, signin, asked, now).await? {
        Ok((user, ..)) => user,
        Err(outcome) => return Ok((outcome, None)),
    };
    let keys = state.settings.login_throttle.keys(&user.username, origin);
    if let Reservation::Blocked { until } = state.store.reserve_login_attempt(&keys, now).await? {
        state.metrics.login_throttled.inc();
        return Ok((Outcome::Blocked { retry_after: (until - now).max(1) }, None));
    }
    let codes = match add_totp(state, &user, secret, code, Actor::User(user.id), now).await? {
        Added::Wrong => {
            state.metrics.login_failures.inc();
            let event = attempt_event(kind::LOGIN_FAILED, user.id, &origin, client_id, now)
                .detail(json!({ "method": "totp", "reason": "wrong_enrolment_code" }));
            state.store.record(&event).await?;
            return Ok((Outcome::Failed, None));
        }
        Added::Added { codes } => codes,
    };
    state.store.settle_login_success(&keys, now).await?;
    let (enrolled, _) = self::enrolled(state.store.as_ref(), &user).await?;
    let outcome = match signin.prove(user.id, Proof::of(Method::Totp, now), &enrolled, now) {
        Ok(next) => decide(state, Box::new(user), next, &enrolled, &origin, client_id, now).await?,
        Err(d) => Outcome::Denied(d),
    };
    Ok((outcome, codes))
}

/// A step with a passkey: passwordless when nobody is named yet, else the named
/// person's second factor. The browser's answer to the ceremony sealed in the page.
pub async fn with_passkey(
    state: &AppState,
    signin: &SignIn,
    ceremony: &crate::service::passkeys::Ceremony,
    challenge: &str,
    credential: &str,
    origin: LoginOrigin<'_>,
    client_id: &str,
) -> Result<Outcome, ApiError> {
    use crate::service::passkeys::{record_counter_went_backwards, verify, Verified};
    let now = state.now();
    let (user_id, proof) = match verify(state, ceremony, challenge, signin.user_id, credential, now).await? {
        Verified::Ok { user_id, proof } => (user_id, proof),
        Verified::Invalid => {
            state.metrics.login_failures.inc();
            let mut event = crate::service::password_login::attempt_event(kind::LOGIN_FAILED, &origin, client_id, now)
                .detail(json!({ "method": "passkey", "reason": "invalid_passkey" }));
            event.user_id = signin.user_id;
            state.store.record(&event).await?;
            return Ok(Outcome::Failed);
        }
        Verified::CounterWentBackwards { user_id } => {
            let address = match origin {
                LoginOrigin::Browser { address, .. } => Some(address.to_string()),
                LoginOrigin::Partner { .. } => None,
            };
            record_counter_went_backwards(state, user_id, client_id, address, now).await?;
            return Ok(Outcome::Failed);
        }
    };
    let Some(user) = state.store.user_by_id(user_id).await? else { return Ok(Outcome::Failed) };
    if user.is_disabled() {
        return Ok(Outcome::Disabled);
    }
    let (enrolled, _) = enrolled(state.store.as_ref(), &user).await?;
    match signin.prove(user.id, proof, &enrolled, now) {
        Ok(next) => decide(state, Box::new(user), next, &enrolled, &origin, client_id, now).await,
        Err(d) => Ok(Outcome::Denied(d)),
    }
}

/// The sign-in's passkey enrolment: the person it names adds the passkey the browser
/// just made (a policy or request asked for one), and the sign-in goes on with it.
#[allow(clippy::too_many_arguments)]
pub async fn enrol_passkey(
    state: &AppState,
    signin: &SignIn,
    ceremony: &crate::service::passkeys::Ceremony,
    challenge: &str,
    credential: &str,
    name: &str,
    origin: LoginOrigin<'_>,
    client_id: &str,
) -> Result<Outcome, ApiError> {
    use crate::service::passkeys::{finish_registration, Registered};
    let now = state.now();
    let asked = |next: &Next| matches!(next, Next::Enrol(methods) if methods.contains(&Method::Passkey));
    let user = match person_of(state, signin, asked, now).await? {
        Ok((user, ..)) => user,
        Err(outcome) => return Ok(outcome),
    };
    let actor = Actor::User(user.id);
    let added = match finish_registration(state, &user, ceremony, challenge, credential, name, actor, now).await? {
        Registered::Added(c) => c,
        Registered::Invalid | Registered::Duplicate | Registered::TooMany => return Ok(Outcome::Failed),
    };
    let (enrolled, _) = self::enrolled(state.store.as_ref(), &user).await?;
    // The passkey was made with user verification just now: it counts as presented.
    let proof = Proof::passkey(now, true, crate::service::passkeys::hardware(&added));
    match signin.prove(user.id, proof, &enrolled, now) {
        Ok(next) => decide(state, Box::new(user), next, &enrolled, &origin, client_id, now).await,
        Err(d) => Ok(Outcome::Denied(d)),
    }
}
