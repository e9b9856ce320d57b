//! The password credential handler of the sign-in engine (`service::signin`), which
//! the login page, the account page and the TCONNECT partner login go through:
//! throttled (`khoa_core::throttle::LoginThrottle`), one answer for
//! unknown users and wrong passwords, with the same argon2id work for both.
//!
//! Each attempt is reserved in the store before its password is checked, so however
//! many arrive at once, no more passwords are checked than the limits allow.

use crate::app::state::AppState;
use crate::http::error::ApiError;
use khoa_core::audit::{kind, Actor, Event};
use khoa_core::throttle::{LoginOrigin, Reservation};
use khoa_core::user::User;
use khoa_core::UnixTime;
use serde_json::json;

pub enum LoginOutcome {
    /// Too many failures: refused without checking the password.
    Blocked {
        retry_after: i64,
    },
    Failed,
    /// The password was right, but the account is disabled (said only then, so that
    /// it tells nothing to someone without the password).
    Disabled,
    Succeeded(Box<User>),
}

/// The audit event of an attempt: where it came from and for which client. What was
/// typed as a username is never recorded (people type passwords there); the account
/// is, by id, when it exists.
pub(crate) fn attempt_event(kind: &'static str, origin: &LoginOrigin<'_>, client_id: &str, now: UnixTime) -> Event {
    let (address, via) = match origin {
        LoginOrigin::Browser { address, .. } => (Some(address.to_string()), "browser".to_string()),
        LoginOrigin::Partner { code } => (None, format!("partner:{code}")),
    };
    Event::new(now, kind, Actor::Anonymous).client(client_id).from_address(address).detail(json!({ "via": via }))
}

pub(crate) async fn password_login(
    state: &AppState,
    username: &str,
    password: &str,
    origin: LoginOrigin<'_>,
    client_id: &str,
) -> Result<LoginOutcome, ApiError> {
    let keys = state.settings.login_throttle.keys(username, origin);
    let now = state.now();
    if let Reservation::Blocked { until } = state.store.reserve_login_attempt(&keys, now).await? {
        state.metrics.login_throttled.inc();
        let retry_after = (until - now).max(1);
        let mut event = attempt_event(kind::LOGIN_THROTTLED, &origin, client_id, now);
        event.detail["retry_after"] = retry_after.into();
        state.store.record(&event).await?;
        return Ok(LoginOutcome::Blocked { retry_after });
    }
    let user = if username.is_empty() { None } else { state.store.user_by_username(username).await? };
    // An unknown user, an account without a password and one whose hash cannot be
    // verified cost the same work as a wrong password.
    let verified =
        state.passwords.verify_or_pretend(password, user.as_ref().and_then(|u| u.password_hash.as_deref())).await;
    let now = state.now();
    match (user, verified) {
        (Some(user), true) if user.is_disabled() => {
            state.store.settle_login_success(&keys, now).await?;
            let mut event = attempt_event(kind::LOGIN_DISABLED, &origin, client_id, now);
            event.user_id = Some(user.id);
            state.store.record(&event).await?;
            Ok(LoginOutcome::Disabled)
        }
        // What the right password leads to (signed in, or asked for a second factor)
        // is the engine's to say and to record (`service::signin`).
        (Some(user), true) => {
            state.store.settle_login_success(&keys, now).await?;
            upgrade_hash(state, &user, password).await?;
            Ok(LoginOutcome::Succeeded(Box::new(user)))
        }
        // Already counted by the reservation.
        (user, _) => {
            state.metrics.login_failures.inc();
            let mut event = attempt_event(kind::LOGIN_FAILED, &origin, client_id, now);
            event.user_id = user.as_ref().map(|u| u.id);
            event.detail["reason"] = if user.is_some() { "wrong_password" } else { "unknown_user" }.into();
            state.store.record(&event).await?;
            Ok(LoginOutcome::Failed)
        }
    }
}

/// An imported hash (bcrypt, PBKDF2, scrypt, argon2i or other argon2id costs) that just
/// verified is replaced by khoa's own argon2id, transparently: the password is the
/// same, so sessions and tokens stay.
async fn upgrade_hash(state: &AppState, user: &User, password: &str) -> Result<(), ApiError> {
    let params = khoa_core::password::PasswordParams::default();
    let Some(stored) = user.password_hash.as_deref().filter(|h| khoa_core::hashes::needs_rehash(h, params)) else {
        return Ok(());
    };
    let from = khoa_core::hashes::scheme_of(stored).map(|s| s.as_str()).unwrap_or("unknown");
    let Ok(new_hash) = state.passwords.hash(password.to_string()).await else {
        tracing::warn!(user_id = user.id, "could not re-hash an imported password; it stays as imported");
        return Ok(());
    };
    let now = state.now();
    let mut event = Event::new(now, kind::USER_PASSWORD_UPGRADED, Actor::User(user.id)).detail(json!({ "from": from }));
    event.user_id = Some(user.id);
    state.store.upgrade_password_hash(user.id, stored, &new_hash, now, &event).await?;
    Ok(())
}

/// The device cookie: proof that this browser signed in to an account before (OWASP's
/// "device cookies"). Its attempts count under the device alone, so neither an attack
/// on the account from elsewhere nor a locked address keeps the owner out.
pub const DEVICE_COOKIE: &str = "khoa_device";
/// How long a device stays known after its last sign-in.
pub const DEVICE_LIFETIME: i64 = 180 * 86_400;
const DEVICE_AAD: &[u8] = b"khoa device cookie v1";

/// The device id of the browser's device cookie, when it proves an earlier sign-in
/// to `username` that is recent enough. The cookie is sealed under the master key, so
/// it cannot be made or altered, and names the account it was issued for.
pub fn known_device(state: &AppState, cookie: Option<&str>, username: &str, now: UnixTime) -> Option<String> {
    let cookie = cookie.filter(|c| c.len() <= 2048)?;
    let plain = state.master.open_text(DEVICE_AAD, cookie).ok()?;
    let text = String::from_utf8(plain).ok()?;
    let mut parts = text.splitn(3, '\n');
    let (device, issued_at, account) = (parts.next()?, parts.next()?.parse::<i64>().ok()?, parts.next()?);
    (account == username && now < issued_at + DEVICE_LIFETIME && issued_at <= now + 60).then(|| device.to_string())
}

/// A fresh device cookie (`Set-Cookie` value) for a sign-in to `username` at `now`.
pub fn device_cookie(state: &AppState, username: &str, now: UnixTime) -> Option<String> {
    let plain = format!("{}\n{now}\n{username}", khoa_core::random::random_token::<16>());
    let value = state.master.seal_text(DEVICE_AAD, plain.as_bytes()).ok()?;
    Some(crate::http::cookies::set(
        DEVICE_COOKIE,
        &value,
        "/oauth2/auth/login",
        DEVICE_LIFETIME,
        state.settings.secure_cookies(),
    ))
}
