//! Checking a username and password, shared by the login page and the TCONNECT
//! partner login: throttled per account and per client address, one answer for
//! unknown users and wrong passwords, with the same argon2id work for both.

use crate::error::ApiError;
use crate::state::AppState;
use khoa_core::user::User;
use std::net::IpAddr;

pub enum LoginOutcome {
    /// Too many failures: refused without checking the password.
    Blocked {
        retry_after: i64,
    },
    Failed,
    Succeeded(User),
}

pub async fn password_login(
    state: &AppState,
    username: &str,
    password: &str,
    ip: IpAddr,
) -> Result<LoginOutcome, ApiError> {
    let keys = [format!("user:{username}"), format!("ip:{ip}")];
    let now = crate::now();
    let mut blocked_until = now;
    for key in &keys {
        if let Some(until) = state.store.login_blocked_until(key).await? {
            blocked_until = blocked_until.max(until);
        }
    }
    if blocked_until > now {
        state.metrics.login_throttled.inc();
        return Ok(LoginOutcome::Blocked { retry_after: blocked_until - now });
    }
    let user = if username.is_empty() { None } else { state.store.user_by_username(username).await? };
    let hash = match &user {
        Some(u) => u.password_hash.clone(),
        None => state.dummy_password_hash().await,
    };
    let verified = state.verify_password(password.to_string(), hash).await;
    match user.filter(|_| verified) {
        Some(user) => {
            state.store.clear_login_failures(&keys[0]).await?;
            Ok(LoginOutcome::Succeeded(user))
        }
        None => {
            state.metrics.login_failures.inc();
            for key in &keys {
                state.store.record_login_failure(key, crate::now(), &state.settings.login_throttle).await?;
            }
            Ok(LoginOutcome::Failed)
        }
    }
}
