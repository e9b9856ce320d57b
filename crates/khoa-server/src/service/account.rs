//! What a person does with their own account: asking for and using a password reset
//! link, verifying an email address, and the account page's changes. The rules are
//! `khoa_core::account`'s; each change is one store transaction with its audit event.
//!
//! Nothing here answers differently for an account that exists and one that does not:
//! a request for a link is counted, recorded and answered the same way for both, and
//! the mail (if any) leaves in the background.

use crate::app::mail::Mail;
use crate::app::state::AppState;
use crate::http::error::ApiError;
use crate::http::i18n::Locale;
use askama::Template;
use khoa_core::account::{check_new_password, token_hash, AccountToken, NewPasswordError, Purpose};
use khoa_core::audit::{kind, Actor, Event};
use khoa_core::throttle::{OnSuccess, Reservation, ThrottleKey, ThrottlePolicy};
use khoa_core::user::User;
use khoa_core::UnixTime;
use khoa_store::{EndedSessions, UserQuery};
use std::net::IpAddr;

/// The answer to a request for a mailed link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// Answered "if the account exists, a mail is on its way", whatever happened.
    Accepted,
    /// This address asked too often: wait `retry_after` seconds.
    Throttled { retry_after: i64 },
}

/// A mailed link of one kind: its words, and the path it opens.
#[derive(Debug, Clone, Copy)]
pub enum LinkKind {
    Reset,
    Verification,
    Registration,
}

impl LinkKind {
    fn path(self) -> &'static str {
        match self {
            Self::Reset => "/account/password/reset",
            Self::Verification => "/account/email/verify",
            Self::Registration => "/account/register/complete",
        }
    }

    /// The link's purpose, whose name the logs use for its mail.
    fn name(self) -> &'static str {
        match self {
            Self::Reset => Purpose::PasswordReset,
            Self::Verification => Purpose::EmailVerification,
            Self::Registration => Purpose::Registration,
        }
        .as_str()
    }
}

#[derive(Template)]
#[template(path = "mail_link.html")]
struct LinkMailHtml<'a> {
    brand: &'a crate::app::settings::Branding,
    lang: &'static str,
    subject: &'a str,
    intro: &'static str,
    account: &'a str,
    link: &'a str,
    button: &'static str,
    validity: &'static str,
    ignore: &'static str,
}

/// The mail carrying `secret` to `to`, about `account`, in `locale`, branded.
pub fn link_mail(
    settings: &crate::Settings,
    kind: LinkKind,
    locale: Locale,
    to: &str,
    account: &str,
    secret: &str,
) -> Mail {
    let a = locale.account();
    let (subject, intro, button, validity) = match kind {
        LinkKind::Reset => (a.reset_mail_subject, a.reset_mail_intro, a.reset_mail_button, a.reset_mail_validity),
        LinkKind::Verification => {
            (a.verify_mail_subject, a.verify_mail_intro, a.verify_mail_button, a.verify_mail_validity)
        }
        LinkKind::Registration => {
            (a.register_mail_subject, a.register_mail_intro, a.register_mail_button, a.verify_mail_validity)
        }
    };
    let brand = &settings.branding;
    let link = format!("{}{}?token={secret}&lang={}", settings.issuer.trim_end_matches('/'), kind.path(), locale.tag());
    let subject = format!("{subject} · {}", brand.product_name);
    let text = format!(
        "{}\n\n{subject}\n\n{intro} {account}.\n\n{button}: {link}\n\n{validity}\n{}\n",
        brand.product_name, a.mail_ignore
    );
    let html = LinkMailHtml {
        brand,
        lang: locale.tag(),
        subject: &subject,
        intro,
        account,
        link: &link,
        button,
        validity,
        ignore: a.mail_ignore,
    }
    .render()
    .unwrap_or_else(|_| text.replace('\n', "<br>"));
    Mail { to: to.to_string(), subject, text, html }
}

fn throttle_key(key: String, policy: ThrottlePolicy) -> ThrottleKey {
    ThrottleKey { key, policy, on_success: OnSuccess::Refund }
}

/// Counts a request for a link from `address`: `Some(wait)` when the address must wait.
async fn admit_address(state: &AppState, address: IpAddr, now: UnixTime) -> Result<Option<i64>, ApiError> {
    let key = throttle_key(format!("mail:address:{address}"), state.settings.mail_throttle_address);
    Ok(match state.store.reserve_login_attempt(&[key], now).await? {
        Reservation::Admitted => None,
        Reservation::Blocked { until } => Some((until - now).max(1)),
    })
}

/// Counts a request for a link about one account (or one name typed, when no account
/// has it: the same write either way); `false` when it asked too often.
async fn admit_account(state: &AppState, key: String, now: UnixTime) -> Result<bool, ApiError> {
    let key = throttle_key(key, state.settings.mail_throttle_account);
    Ok(state.store.reserve_login_attempt(&[key], now).await? == Reservation::Admitted)
}

/// The account a person names by its username, or by its email address.
pub async fn find_account(state: &AppState, identifier: &str) -> Result<Option<User>, ApiError> {
    if identifier.is_empty() || identifier.len() > 254 {
        return Ok(None);
    }
    if let Some(user) = state.store.user_by_username(identifier).await? {
        return Ok(Some(user));
    }
    if !identifier.contains('@') {
        return Ok(None);
    }
    let query = UserQuery { email: Some(identifier.to_string()), limit: 1, ..Default::default() };
    Ok(state.store.users_page(&query).await?.into_iter().next())
}

/// "Forgot password?": a reset link to the account's address, if there is such an
/// account with an address, it is enabled, and neither it nor `address` asked too
/// often; the same answer in every case but the last.
pub async fn request_password_reset(
    state: &AppState,
    identifier: &str,
    address: IpAddr,
    locale: Locale,
) -> Result<Requested, ApiError> {
    let now = state.now();
    if let Some(retry_after) = admit_address(state, address, now).await? {
        return Ok(Requested::Throttled { retry_after });
    }
    let identifier = identifier.trim();
    let user = find_account(state, identifier).await?;
    let key = match &user {
        Some(u) => format!("mail:account:{}", u.id),
        None => format!("mail:name:{}", identifier.to_lowercase()),
    };
    let admitted = admit_account(state, key, now).await?;
    let mut event =
        Event::new(now, kind::PASSWORD_RESET_REQUESTED, Actor::Anonymous).from_address(Some(address.to_string()));
    let target = user.filter(|u| !u.is_disabled()).and_then(|u| u.email.clone().map(|e| (u, e)));
    match (target, admitted, state.outbox.as_ref()) {
        (Some((user, email)), true, Some(outbox)) => {
            event.user_id = Some(user.id);
            event.detail = serde_json::json!({"sent": true});
            let (secret, token) = AccountToken::issue(Purpose::PasswordReset, user.id, None, now);
            state.store.insert_account_token(&token, &event).await?;
            outbox.send(
                LinkKind::Reset.name(),
                link_mail(&state.settings, LinkKind::Reset, locale, &email, &user.username, &secret),
            );
        }
        (target, admitted, _) => {
            // Recorded as for an account, but for whom only when one matched.
            event.user_id = target.as_ref().map(|(u, _)| u.id);
            event.detail = serde_json::json!({"sent": false, "throttled": !admitted});
            state.store.record(&event).await?;
        }
    }
    Ok(Requested::Accepted)
}

/// Whether `secret` opens a usable link for `purpose` (the page of its form).
pub async fn usable_link(state: &AppState, secret: &str, purpose: Purpose) -> Result<Option<AccountToken>, ApiError> {
    Ok(state.store.account_token(&token_hash(secret), purpose, state.now()).await?)
}

/// What setting a password with a reset link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetOutcome {
    /// The password is set; every session ended, every token revoked.
    Done(EndedSessions),
    /// The link is unknown, used or expired.
    LinkUnusable,
    Password(NewPasswordError),
}

/// An argon2id hash of a new password, off the async executor.
async fn hash(password: &str) -> Result<String, ApiError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        khoa_core::password::hash_password(&password, khoa_core::password::PasswordParams::default())
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(e.to_string()))
}

pub async fn reset_password(
    state: &AppState,
    secret: &str,
    password: &str,
    confirmation: &str,
    address: IpAddr,
) -> Result<ResetOutcome, ApiError> {
    if let Err(e) = check_new_password(password, confirmation) {
        return Ok(ResetOutcome::Password(e));
    }
    // Hash only for a link that can be used (hashing costs 19 MiB and tens of ms).
    if usable_link(state, secret, Purpose::PasswordReset).await?.is_none() {
        return Ok(ResetOutcome::LinkUnusable);
    }
    let new_hash = hash(password).await?;
    let now = state.now();
    let keep_until = crate::service::logout::keep_deliveries_until(&state.settings, now);
    let event = Event::new(now, kind::PASSWORD_RESET, Actor::Anonymous).from_address(Some(address.to_string()));
    let done = state.store.reset_password(&token_hash(secret), &new_hash, now, keep_until, &event).await?;
    state.users.clear();
    Ok(done.map_or(ResetOutcome::LinkUnusable, ResetOutcome::Done))
}

/// A verification link for `email` (which becomes `user_id`'s address once the link
/// is used): stored with its audit event, and the mail that carries it. The caller
/// delivers it: the server in the background, the command line at once.
pub async fn issue_verification(
    store: &dyn khoa_store::Store,
    settings: &crate::Settings,
    (user_id, username): (i64, &str),
    email: &str,
    locale: Locale,
    actor: Actor,
    now: UnixTime,
) -> Result<Mail, khoa_store::StoreError> {
    let (secret, token) = AccountToken::issue(Purpose::EmailVerification, user_id, Some(email.to_string()), now);
    let mut event = Event::new(now, kind::EMAIL_VERIFICATION_SENT, actor);
    event.user_id = Some(user_id);
    store.insert_account_token(&token, &event).await?;
    Ok(link_mail(settings, LinkKind::Verification, locale, email, username, &secret))
}

/// Mails a verification link for `email` to `email`, for the user `(id, username)`;
/// `false` when no mail can be sent (no SMTP settings).
pub async fn send_verification(
    state: &AppState,
    user: (i64, &str),
    email: &str,
    locale: Locale,
    actor: Actor,
) -> Result<bool, khoa_store::StoreError> {
    let Some(outbox) = state.outbox.as_ref() else { return Ok(false) };
    let mail =
        issue_verification(state.store.as_ref(), &state.settings, user, email, locale, actor, state.now()).await?;
    outbox.send(LinkKind::Verification.name(), mail);
    Ok(true)
}

/// Uses a verification link: its address becomes the user's, verified.
pub async fn verify_email(state: &AppState, secret: &str, address: IpAddr) -> Result<Option<(i64, String)>, ApiError> {
    let now = state.now();
    let event = Event::new(now, kind::EMAIL_VERIFIED, Actor::Anonymous).from_address(Some(address.to_string()));
    let done = state.store.verify_email(&token_hash(secret), now, &event).await?;
    state.users.clear();
    Ok(done)
}

/// A self-registration as its form gives it.
pub struct Registration<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub password: &'a str,
    pub confirmation: &'a str,
}

/// What a registration form can be refused for, on the form itself. Nothing here
/// depends on other accounts: a username or address already taken is not told.
#[derive(Debug)]
pub enum RegistrationRefused {
    Profile(khoa_core::user::UserError),
    Password(NewPasswordError),
}

/// What waits in a registration link until its address is proven.
#[derive(serde::Serialize, serde::Deserialize)]
struct PendingAccount {
    username: String,
    email: String,
    name: Option<String>,
    password_hash: String,
}

/// Sign-up: checks the form, and mails a link that creates the account to the address
/// given, unless the username or the address is taken (then nothing is sent, and the
/// answer is the same).
pub async fn request_registration(
    state: &AppState,
    form: &Registration<'_>,
    address: IpAddr,
    locale: Locale,
) -> Result<Result<Requested, RegistrationRefused>, ApiError> {
    let name = Some(form.name.trim()).filter(|n| !n.is_empty()).map(str::to_string);
    let profile = khoa_core::user::Profile {
        username: form.username.trim().to_string(),
        email: Some(form.email.trim().to_string()),
        name,
        ..Default::default()
    };
    let profile = match profile.validate() {
        Ok(p) => p,
        Err(e) => return Ok(Err(RegistrationRefused::Profile(e))),
    };
    if let Err(e) = check_new_password(form.password, form.confirmation) {
        return Ok(Err(RegistrationRefused::Password(e)));
    }
    let now = state.now();
    if let Some(retry_after) = admit_address(state, address, now).await? {
        return Ok(Ok(Requested::Throttled { retry_after }));
    }
    let email = profile.email.clone().unwrap_or_default();
    let admitted = admit_account(state, format!("mail:name:{}", email.to_lowercase()), now).await?;
    // Hashed whether or not the account can be made: the answer takes as long either way.
    let password_hash = hash(form.password).await?;
    let taken = state.store.user_by_username(&profile.username).await?.is_some()
        || find_account(state, &email).await?.is_some();
    let mut event =
        Event::new(now, kind::EMAIL_VERIFICATION_SENT, Actor::Anonymous).from_address(Some(address.to_string()));
    match (admitted && !taken, state.outbox.as_ref()) {
        (true, Some(outbox)) => {
            let pending = PendingAccount {
                username: profile.username.clone(),
                email: email.clone(),
                name: profile.name.clone(),
                password_hash,
            };
            let (secret, mut token) = AccountToken::issue(Purpose::Registration, 0, Some(email.clone()), now);
            token.payload = Some(serde_json::to_string(&pending).map_err(|e| ApiError::Internal(e.to_string()))?);
            event.detail = serde_json::json!({"registration": true, "sent": true});
            state.store.insert_account_token(&token, &event).await?;
            let mail = link_mail(&state.settings, LinkKind::Registration, locale, &email, &profile.username, &secret);
            outbox.send(LinkKind::Registration.name(), mail);
        }
        _ => {
            event.detail = serde_json::json!({"registration": true, "sent": false, "throttled": !admitted});
            state.store.record(&event).await?;
        }
    }
    Ok(Ok(Requested::Accepted))
}

/// What completing a registration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completed {
    Created(Box<User>),
    /// The username was taken meanwhile.
    Taken,
    LinkUnusable,
}

/// Uses a registration link: creates its account, its address verified.
pub async fn complete_registration(state: &AppState, secret: &str, address: IpAddr) -> Result<Completed, ApiError> {
    let now = state.now();
    let Some(link) = state.store.use_account_token(&token_hash(secret), Purpose::Registration, now).await? else {
        return Ok(Completed::LinkUnusable);
    };
    let Some(pending) = link.payload.as_deref().and_then(|p| serde_json::from_str::<PendingAccount>(p).ok()) else {
        return Ok(Completed::LinkUnusable);
    };
    let user = khoa_core::user::NewUser {
        username: pending.username,
        password_hash: pending.password_hash,
        email: Some(pending.email),
        email_verified: true,
        name: pending.name,
        phone_number: None,
        phone_number_verified: false,
        picture: None,
        attributes: Default::default(),
        created_at: now,
    };
    let event = Event::new(now, kind::USER_REGISTERED, Actor::Anonymous).from_address(Some(address.to_string()));
    match state.store.insert_user(&user, &event).await {
        Ok(user) => Ok(Completed::Created(Box::new(user))),
        Err(khoa_store::StoreError::Conflict(_)) => Ok(Completed::Taken),
        Err(e) => Err(e.into()),
    }
}
