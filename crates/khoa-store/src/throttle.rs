//! Failure counters of login and client authentication (the policy is
//! `khoa_core::throttle`; here it is applied atomically).

use crate::db::{args, Conn};
use crate::engine::{Engine, SqlStore};
use crate::StoreError;
use async_trait::async_trait;
use khoa_core::throttle::{OnSuccess, Reservation, ThrottleKey, ThrottlePolicy};
use khoa_core::UnixTime;

#[async_trait]
pub trait ThrottleStore: Send + Sync + 'static {
    /// Counts one more failure (forgetting failures older than `policy.window`) and
    /// returns until when the key is blocked.
    async fn record_login_failure(
        &self,
        key: &str,
        now: UnixTime,
        policy: &ThrottlePolicy,
    ) -> Result<UnixTime, StoreError>;
    /// Reserves one login attempt under every key, atomically, before its password is
    /// checked: it is counted (as a failure, until [`ThrottleStore::settle_login_success`])
    /// under all of them while each is under its limit, or under none, and then the
    /// answer is `Blocked` with the time the blocking key allows attempts again. One
    /// conditional write per key, so concurrent attempts (in any process) can never
    /// pass a key's limit.
    async fn reserve_login_attempt(&self, keys: &[ThrottleKey], now: UnixTime) -> Result<Reservation, StoreError>;
    /// The reserved attempt logged in: each key forgets its failures or gets this
    /// attempt back, as its `on_success` says.
    async fn settle_login_success(&self, keys: &[ThrottleKey], now: UnixTime) -> Result<(), StoreError>;
}

/// One more failure under `key`, counted only while the key is not blocked when
/// `unless_blocked`, else always. Returns the failures now counted, or `None` when it is blocked.
/// The row lock (PostgreSQL) or the write lock (SQLite) orders concurrent attempts,
/// and each sees the `blocked_until` the one before it set.
async fn count_failure(
    db: &mut impl Conn,
    key: &str,
    now: UnixTime,
    policy: &ThrottlePolicy,
    unless_blocked: bool,
) -> Result<Option<i64>, StoreError> {
    let condition = if unless_blocked { "WHERE login_throttle.blocked_until <= $2" } else { "" };
    let failures = db
        .scalar(
            &format!(
                "INSERT INTO login_throttle (key, failures, last_failure_at, blocked_until) VALUES ($1, 1, $2, $2) \
                 ON CONFLICT (key) DO UPDATE SET \
                   failures = CASE WHEN login_throttle.last_failure_at < $3 THEN 1 ELSE login_throttle.failures + 1 END, \
                   last_failure_at = $2 {condition} \
                 RETURNING failures"
            ),
            args![key, now, now - policy.window],
        )
        .await?;
    if let Some(failures) = failures {
        let until = policy.blocked_until(failures, now);
        // A reservation passed an unblocked key: an unchanged block needs no write.
        if until != now || !unless_blocked {
            db.exec("UPDATE login_throttle SET blocked_until = $1 WHERE key = $2", args![until, key]).await?;
        }
    }
    Ok(failures)
}

async fn reserve(db: &mut impl Conn, keys: &[ThrottleKey], now: UnixTime) -> Result<Reservation, StoreError> {
    // Undone as a whole when a later key refuses: counted under none.
    db.exec("SAVEPOINT reserve_login", &[]).await?;
    for k in keys {
        if count_failure(db, &k.key, now, &k.policy, true).await?.is_none() {
            db.exec("ROLLBACK TO SAVEPOINT reserve_login", &[]).await?;
            db.exec("RELEASE SAVEPOINT reserve_login", &[]).await?;
            let until = db.scalar("SELECT blocked_until FROM login_throttle WHERE key = $1", args![k.key]).await?;
            return Ok(Reservation::Blocked { until: until.unwrap_or(now) });
        }
    }
    db.exec("RELEASE SAVEPOINT reserve_login", &[]).await?;
    Ok(Reservation::Admitted)
}

async fn settle(db: &mut impl Conn, keys: &[ThrottleKey], now: UnixTime) -> Result<(), StoreError> {
    for k in keys {
        match k.on_success {
            OnSuccess::Forget => {
                db.exec("DELETE FROM login_throttle WHERE key = $1", args![k.key]).await?;
            }
            // This attempt was no failure after all; a block that only the
            // reservation caused is lifted.
            OnSuccess::Refund => {
                db.exec(
                    "UPDATE login_throttle SET failures = failures - 1, \
                     blocked_until = CASE WHEN failures - 1 < $1 THEN $2 ELSE blocked_until END \
                     WHERE key = $3 AND failures > 0",
                    args![k.policy.free_failures, now, k.key],
                )
                .await?;
            }
        }
    }
    Ok(())
}

#[async_trait]
impl<E: Engine> ThrottleStore for SqlStore<E> {
    async fn record_login_failure(
        &self,
        key: &str,
        now: UnixTime,
        policy: &ThrottlePolicy,
    ) -> Result<UnixTime, StoreError> {
        let (key, policy) = (key.to_owned(), *policy);
        self.write(move |db| {
            Box::pin(async move {
                let failures = count_failure(db, &key, now, &policy, false).await?.unwrap_or(1);
                Ok(policy.blocked_until(failures, now))
            })
        })
        .await
    }

    async fn reserve_login_attempt(&self, keys: &[ThrottleKey], now: UnixTime) -> Result<Reservation, StoreError> {
        let keys = keys.to_vec();
        self.write(move |db| Box::pin(async move { reserve(db, &keys, now).await })).await
    }

    async fn settle_login_success(&self, keys: &[ThrottleKey], now: UnixTime) -> Result<(), StoreError> {
        let keys = keys.to_vec();
        self.write(move |db| Box::pin(async move { settle(db, &keys, now).await })).await
    }
}
