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
    /// The notice of an address change, to the old address, with "it was not me".
    ChangeReport,
}

impl LinkKind {
    fn path(self) -> &'static str {
        match self {
            Self::Reset => "/account/password/reset",
            Self::Verification => "/account/email/verify",
            Self::Registration => "/account/register/complete",
            Self::ChangeReport => "/account/email/report",
        }
    }

    /// The link's purpose, whose name the logs use for its mail.
    fn name(self) -> &'static str {
        match self {
            Self::Reset => Purpose::PasswordReset,
            Self::Verification => Purpose::EmailVerification,
            Self::Registration => Purpose::Registration,
            Self::ChangeReport => Purpose::ChangeReport,
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

/// The mail carrying `secret` to `to`, in `locale`, branded. `account` (the username)
/// is named only in mails to an address the account has verified: a mail to an
/// unproven address carries no text that whoever typed the address chose, so the
/// organisation's sender cannot be made to deliver a stranger's words.
pub fn link_mail(
    settings: &crate::Settings,
    kind: LinkKind,
    locale: Locale,
    to: &str,
    account: Option<&str>,
    secret: &str,
) -> Mail {
    let a = locale.account();
    let (subject, intro, button, validity, ignore) = match kind {
        LinkKind::Reset => {
            (a.reset_mail_subject, a.reset_mail_intro, a.reset_mail_button, a.reset_mail_validity, a.mail_ignore)
        }
        LinkKind::Verification => {
            (a.verify_mail_subject, a.verify_mail_intro, a.verify_mail_button, a.verify_mail_validity, a.mail_ignore)
        }
        LinkKind::Registration => (
            a.register_mail_subject,
            a.register_mail_intro,
            a.register_mail_button,
            a.verify_mail_validity,
            a.mail_ignore,
        ),
        LinkKind::ChangeReport => (
            a.change_mail_subject,
            a.change_mail_intro,
            a.change_mail_button,
            a.change_mail_validity,
            a.change_mail_ignore,
        ),
    };
    let account = account.unwrap_or(a.mail_your_account);
    let brand = &settings.branding;
    let link = format!("{}{}?token={secret}&lang={}", settings.issuer.trim_end_matches('/'), kind.path(), locale.tag());
    let subject = format!("{subject} · {}", brand.product_name);
    let text = format!(
        "{}\n\n{subject}\n\n{intro} {account}.\n\n{button}: {link}\n\n{validity}\n{ignore}\n",
        brand.product_name
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
        ignore,
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

/// Counts a mail about one account (`account_key`: `mail:account:ID`, or
/// `mail:name:…` for a name that no account has: the same write either way) to each of
/// `recipients`; `false` when the account or a recipient was mailed too often, and then
/// nothing is counted. Every path that sends mail passes here, so no form, link or
/// operator's call can turn khoa into a mail cannon against one address or account.
pub async fn admit_mail(
    store: &dyn khoa_store::Store,
    settings: &crate::Settings,
    account_key: String,
    recipients: &[&str],
    now: UnixTime,
) -> Result<bool, khoa_store::StoreError> {
    let policy = settings.mail_throttle_account;
    let mut keys = vec![throttle_key(account_key, policy)];
    keys.extend(recipients.iter().map(|r| throttle_key(format!("mail:to:{}", r.to_lowercase()), policy)));
    Ok(store.reserve_login_attempt(&keys, now).await? == Reservation::Admitted)
}

fn account_key(user_id: i64) -> String {
    format!("mail:account:{user_id}")
}

/// The account a person names by its email address or its username: an address first
/// (the one account that has it verified, else the first that has it), so that no
/// username that looks like somebody's address can catch their mail.
pub async fn find_account(state: &AppState, identifier: &str) -> Result<Option<User>, ApiError> {
    if identifier.is_empty() || identifier.len() > 254 {
        return Ok(None);
    }
    if identifier.contains('@') {
        if let Some(user) = by_address(state, identifier).await? {
            return Ok(Some(user));
        }
    }
    Ok(state.store.user_by_username(identifier).await?)
}

/// The accounts that have `email` (ASCII case ignored), at most ten.
async fn holders(state: &AppState, email: &str) -> Result<Vec<User>, ApiError> {
    let query = UserQuery { email: Some(email.to_string()), limit: 10, ..Default::default() };
    Ok(state.store.users_page(&query).await?)
}

/// The account that has `email`: the one that has it verified, else the first.
async fn by_address(state: &AppState, email: &str) -> Result<Option<User>, ApiError> {
    let mut found = holders(state, email).await?;
    let verified = found.iter().position(|u| u.email_verified);
    Ok(match verified {
        Some(i) => Some(found.swap_remove(i)),
        None => found.into_iter().next(),
    })
}

/// Whether `email` is verified on an account other than `user_id` (the page's early
/// answer; the store decides again in the transaction that verifies).
async fn verified_elsewhere(state: &AppState, email: &str, user_id: i64) -> Result<bool, ApiError> {
    Ok(holders(state, email).await?.iter().any(|u| u.email_verified && u.id != user_id))
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
        Some(u) => account_key(u.id),
        None => format!("mail:name:{}", identifier.to_lowercase()),
    };
    let recipients: Vec<&str> = user.iter().filter_map(|u| u.email.as_deref()).collect();
    let admitted = admit_mail(state.store.as_ref(), &state.settings, key, &recipients, now).await?;
    let mut event =
        Event::new(now, kind::PASSWORD_RESET_REQUESTED, Actor::Anonymous).from_address(Some(address.to_string()));
    let target = user.filter(|u| !u.is_disabled()).and_then(|u| u.email.clone().map(|e| (u, e)));
    match (target, admitted, state.outbox.as_ref()) {
        (Some((user, email)), true, Some(outbox)) => {
            event.user_id = Some(user.id);
            event.detail = serde_json::json!({"sent": true});
            let (secret, token) = AccountToken::issue(Purpose::PasswordReset, user.id, None, now);
            state.store.insert_account_token(&token, &event).await?;
            let account = user.email_verified.then_some(user.username.as_str());
            outbox.send(
                LinkKind::Reset.name(),
                link_mail(&state.settings, LinkKind::Reset, locale, &email, account, &secret),
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

/// An argon2id hash of a new password, in the password slots.
async fn hash(state: &AppState, password: &str) -> Result<String, ApiError> {
    state.passwords.hash(password.to_string()).await.map_err(|e| ApiError::Internal(e.to_string()))
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
    let new_hash = hash(state, password).await?;
    let now = state.now();
    let keep_until = crate::service::logout::keep_deliveries_until(&state.settings, now);
    let event = Event::new(now, kind::PASSWORD_RESET, Actor::Anonymous).from_address(Some(address.to_string()));
    let done = state.store.reset_password(&token_hash(secret), &new_hash, now, keep_until, &event).await?;
    state.users.clear();
    Ok(done.map_or(ResetOutcome::LinkUnusable, ResetOutcome::Done))
}

/// A verification link for `email` (which becomes `user_id`'s address once the link
/// is used): stored with its audit event, and the mail that carries it; `None` when
/// the account or the address was mailed too often ([`admit_mail`]). The caller
/// delivers it: the server in the background, the command line at once. The mail goes
/// to an address not proven yet, so it names no account (the page of its link does).
pub async fn issue_verification(
    store: &dyn khoa_store::Store,
    settings: &crate::Settings,
    user_id: i64,
    email: &str,
    locale: Locale,
    actor: Actor,
    now: UnixTime,
) -> Result<Option<Mail>, khoa_store::StoreError> {
    if !admit_mail(store, settings, account_key(user_id), &[email], now).await? {
        return Ok(None);
    }
    Ok(Some(verification_link(store, settings, user_id, email, locale, actor, now).await?))
}

/// The link of [`issue_verification`], once admitted.
async fn verification_link(
    store: &dyn khoa_store::Store,
    settings: &crate::Settings,
    user_id: i64,
    email: &str,
    locale: Locale,
    actor: Actor,
    now: UnixTime,
) -> Result<Mail, khoa_store::StoreError> {
    let (secret, token) = AccountToken::issue(Purpose::EmailVerification, user_id, Some(email.to_string()), now);
    let mut event = Event::new(now, kind::EMAIL_VERIFICATION_SENT, actor);
    event.user_id = Some(user_id);
    store.insert_account_token(&token, &event).await?;
    Ok(link_mail(settings, LinkKind::Verification, locale, email, None, &secret))
}

/// What became of a request to mail a verification link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Sent,
    /// No SMTP settings.
    NoMail,
    /// The account or the address was mailed too often.
    Throttled,
}

/// Mails a verification link for `email` to `email`, for the user `user_id`.
pub async fn send_verification(
    state: &AppState,
    user_id: i64,
    email: &str,
    locale: Locale,
    actor: Actor,
) -> Result<Sent, khoa_store::StoreError> {
    let Some(outbox) = state.outbox.as_ref() else { return Ok(Sent::NoMail) };
    let issued =
        issue_verification(state.store.as_ref(), &state.settings, user_id, email, locale, actor, state.now()).await?;
    let Some(mail) = issued else { return Ok(Sent::Throttled) };
    outbox.send(LinkKind::Verification.name(), mail);
    Ok(Sent::Sent)
}

/// What asking for a new address on the account page did (the page says the same
/// in every case but a throttled address: nothing tells whether the address is in use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressChange {
    /// A verification link went to the new address, a notice to the old one.
    Mailed,
    /// Not mailed: the account or an address was mailed too often, or the new address
    /// is verified on another account, or no mail can be sent.
    NotMailed,
    /// This client address asked too often: wait `retry_after` seconds.
    Throttled { retry_after: i64 },
}

/// The account page's request for a new address `email` for `user` (its password
/// already checked by the caller): a verification link to the new address and, when
/// the account has one, a notice to the old address with a link that undoes the
/// change and signs the account out everywhere ([`report_email_change`]).
pub async fn request_address_change(
    state: &AppState,
    user: &User,
    email: &str,
    address: IpAddr,
    locale: Locale,
) -> Result<AddressChange, ApiError> {
    let now = state.now();
    if let Some(retry_after) = admit_address(state, address, now).await? {
        return Ok(AddressChange::Throttled { retry_after });
    }
    let Some(outbox) = state.outbox.as_ref() else { return Ok(AddressChange::NotMailed) };
    let actor = Actor::User(user.id);
    if verified_elsewhere(state, email, user.id).await? {
        let mut event = Event::new(now, kind::EMAIL_VERIFICATION_SENT, actor).from_address(Some(address.to_string()));
        event.user_id = Some(user.id);
        event.detail = serde_json::json!({"sent": false, "reason": "verified_elsewhere"});
        state.store.record(&event).await?;
        return Ok(AddressChange::NotMailed);
    }
    let old = user.email.as_deref().filter(|old| !old.eq_ignore_ascii_case(email));
    let recipients: Vec<&str> = std::iter::once(email).chain(old).collect();
    if !admit_mail(state.store.as_ref(), &state.settings, account_key(user.id), &recipients, now).await? {
        return Ok(AddressChange::NotMailed);
    }
    let mail =
        verification_link(state.store.as_ref(), &state.settings, user.id, email, locale, actor.clone(), now).await?;
    outbox.send(LinkKind::Verification.name(), mail);
    if let Some(old) = old {
        let (secret, token) = AccountToken::issue(Purpose::ChangeReport, user.id, Some(old.to_string()), now);
        let mut event = Event::new(now, kind::EMAIL_CHANGE_NOTICE_SENT, actor).from_address(Some(address.to_string()));
        event.user_id = Some(user.id);
        state.store.insert_account_token(&token, &event).await?;
        let account = user.email_verified.then_some(user.username.as_str());
        outbox.send(
            LinkKind::ChangeReport.name(),
            link_mail(&state.settings, LinkKind::ChangeReport, locale, old, account, &secret),
        );
    }
    Ok(AddressChange::Mailed)
}

/// "It was not me", from the notice of an address change: the change is undone, the
/// account signed out everywhere, its pending links cancelled. `None` when the link
/// is unknown, used or expired.
pub async fn report_email_change(
    state: &AppState,
    secret: &str,
    address: IpAddr,
) -> Result<Option<EndedSessions>, ApiError> {
    let now = state.now();
    let keep_until = crate::service::logout::keep_deliveries_until(&state.settings, now);
    let event = Event::new(now, kind::EMAIL_CHANGE_REPORTED, Actor::Anonymous).from_address(Some(address.to_string()));
    let done = state.store.report_email_change(&token_hash(secret), now, keep_until, &event).await?;
    state.users.clear();
    Ok(done)
}

/// What using a verification link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// The address is the user's, verified.
    Done {
        user_id: i64,
        email: String,
    },
    /// The address is verified on another account: nothing changed.
    Taken,
    LinkUnusable,
}

/// Uses a verification link: its address becomes the user's, verified, unless another
/// account has it verified (an address is verified on one account at most).
pub async fn verify_email(state: &AppState, secret: &str, address: IpAddr) -> Result<Verified, ApiError> {
    let now = state.now();
    let event = Event::new(now, kind::EMAIL_VERIFIED, Actor::Anonymous).from_address(Some(address.to_string()));
    let done = match state.store.verify_email(&token_hash(secret), now, &event).await {
        Ok(Some((user_id, email))) => Verified::Done { user_id, email },
        Ok(None) => Verified::LinkUnusable,
        Err(khoa_store::StoreError::Conflict(_)) => Verified::Taken,
        Err(e) => return Err(e.into()),
    };
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
    // The account is made once its address is verified: a username with `@` must be
    // that address.
    let profile = match (khoa_core::user::Profile { email_verified: true, ..profile }).validate_new() {
        Ok(p) => khoa_core::user::Profile { email_verified: false, ..p },
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
    let name_key = format!("mail:name:{}", khoa_core::user::username_key(&profile.username));
    let admitted = admit_mail(state.store.as_ref(), &state.settings, name_key, &[&email], now).await?;
    // Hashed whether or not the account can be made: the answer takes as long either way.
    let password_hash = hash(state, form.password).await?;
    let taken =
        state.store.user_by_username(&profile.username).await?.is_some() || by_address(state, &email).await?.is_some();
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
            // The address is not proven: the mail names nothing its sender typed.
            let mail = link_mail(&state.settings, LinkKind::Registration, locale, &email, None, &secret);
            outbox.send(LinkKind::Registration.name(), mail);
        }
        _ => {
            event.detail = serde_json::json!({"registration": true, "sent": false, "throttled": !admitted});
            state.store.record(&event).await?;
        }
    }
    Ok(Ok(Requested::Accepted))
}

/// The username a registration link would create.
pub fn pending_username(link: &AccountToken) -> Option<String> {
    link.payload.as_deref().and_then(|p| serde_json::from_str::<PendingAccount>(p).ok()).map(|p| p.username)
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
        password_hash: Some(pending.password_hash),
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

/// A change to how a person signs in, as their notice names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorChange {
    Added,
    Removed,
    NewRecoveryCodes,
}

#[derive(Template)]
#[template(path = "mail_notice.html")]
struct NoticeMailHtml<'a> {
    brand: &'a crate::app::settings::Branding,
    lang: &'static str,
    subject: &'a str,
    lines: &'a [String],
}

/// Tells the person, at their verified address, that a way of signing in changed (when
/// mail is configured; counted with every other mail to them, so a flood of changes
/// cannot flood their mailbox). What a stolen session does is then not silent.
pub async fn factor_notice(
    state: &AppState,
    user: &User,
    change: FactorChange,
    locale: Locale,
) -> Result<(), ApiError> {
    let (Some(outbox), Some(to)) = (state.outbox.as_ref(), user.email.as_deref().filter(|_| user.email_verified))
    else {
        return Ok(());
    };
    let now = state.now();
    if !admit_mail(state.store.as_ref(), &state.settings, account_key(user.id), &[to], now).await? {
        return Ok(());
    }
    let f = locale.factors();
    let (subject, what) = match change {
        FactorChange::Added => (f.mail_added_subject, f.mail_added),
        FactorChange::Removed => (f.mail_removed_subject, f.mail_removed),
        FactorChange::NewRecoveryCodes => (f.mail_codes_subject, f.mail_codes),
    };
    let brand = &state.settings.branding;
    let subject = format!("{subject} · {}", brand.product_name);
    let lines = [format!("{what} {}.", user.username), f.mail_not_you.to_string()];
    let text = format!("{}\n\n{subject}\n\n{}\n\n{}\n", brand.product_name, lines[0], lines[1]);
    let html = NoticeMailHtml { brand, lang: locale.tag(), subject: &subject, lines: &lines }
        .render()
        .unwrap_or_else(|_| String::new());
    outbox.send("factor_notice", Mail { to: to.to_string(), subject, text, html });
    Ok(())
}
