//! Logout of an SSO session, and the outbox of back-channel logout notices it fills.

use crate::audit;
use crate::db::{args, Conditions, Conn, FromRow, Row, Value};
use crate::engine::{Engine, SqlStore};
use crate::{Backend, StoreError};
use async_trait::async_trait;
use khoa_core::audit::Event;
use khoa_core::UnixTime;

#[async_trait]
pub trait LogoutStore: Send + Sync + 'static {
    /// Ends the session `sid`, revokes its access tokens and the refresh tokens that
    /// were not granted `offline_access` (OIDC Core §11), and queues `notices`
    /// (first attempt at `now`, kept until `keep_until`), recording `audit`. `false`
    /// (and nothing queued or recorded) if the session had already ended.
    async fn logout_session(
        &self,
        sid: &str,
        now: UnixTime,
        notices: &[Notice],
        keep_until: UnixTime,
        audit: &Event,
    ) -> Result<bool, StoreError>;
    /// Claims up to `limit` due notices for `holder` until `claim_until`; a notice is
    /// claimed by one worker at a time.
    async fn claim_deliveries(
        &self,
        holder: &str,
        now: UnixTime,
        claim_until: UnixTime,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Records an attempt (by the holder of the claim) and releases the claim.
    async fn record_attempt(
        &self,
        id: &str,
        holder: &str,
        now: UnixTime,
        result: &AttemptRecord,
    ) -> Result<bool, StoreError>;
    /// The newest notices first.
    async fn deliveries(&self, limit: i64) -> Result<Vec<Delivery>, StoreError>;
    /// A page of notices, newest first: of `status` when given, older than `before`
    /// (the previous page's last: its creation time and id).
    async fn deliveries_page(
        &self,
        status: Option<&str>,
        before: Option<(UnixTime, String)>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Makes a failed or pending notice due at `now` again, with fresh attempts, and
    /// records `audit`; `None` when there is no such notice, `Some(false)` when it was
    /// delivered already (and nothing changed).
    async fn retry_delivery(&self, id: &str, now: UnixTime, audit: &Event) -> Result<Option<bool>, StoreError>;
    /// Notices by status.
    async fn delivery_counts(&self) -> Result<Vec<(String, i64)>, StoreError>;
}

/// A back-channel logout notice to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub id: String,
    pub client_id: String,
    pub uri: String,
    pub sub: String,
    pub sid: String,
}

/// A queued notice and the state of its delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub notice: Notice,
    pub status: String,
    pub attempts: i64,
    pub created_at: UnixTime,
    pub next_attempt_at: UnixTime,
    pub delivered_at: Option<UnixTime>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

/// The result of one delivery attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptRecord {
    Delivered {
        status: i64,
    },
    /// Retry at `next_attempt_at`.
    Retry {
        next_attempt_at: UnixTime,
        status: Option<i64>,
        error: String,
    },
    /// Given up: a permanent refusal, or no attempts or time left.
    Failed {
        status: Option<i64>,
        error: String,
    },
}

const COLUMNS: &str = "id, client_id, uri, sub, sid, status, attempts, created_at, \
    next_attempt_at, delivered_at, last_status, last_error";

impl FromRow for Delivery {
    fn from_row(r: &mut Row) -> Result<Self, StoreError> {
        Ok(Delivery {
            notice: Notice { id: r.take()?, client_id: r.take()?, uri: r.take()?, sub: r.take()?, sid: r.take()? },
            status: r.take()?,
            attempts: r.take()?,
            created_at: r.take()?,
            next_attempt_at: r.take()?,
            delivered_at: r.take()?,
            last_status: r.take()?,
            last_error: r.take()?,
        })
    }
}

/// Queues a notice inside the caller's transaction: pending, its first attempt at
/// `now`, kept until `keep_until`.
pub(crate) async fn queue_notice(
    db: &mut impl Conn,
    n: &Notice,
    now: UnixTime,
    keep_until: UnixTime,
) -> Result<(), StoreError> {
    db.exec(
        &format!(
            "INSERT INTO logout_deliveries ({COLUMNS}, claimed_until, expires_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, NULL, NULL, NULL, 0, $7)"
        ),
        args![n.id, n.client_id, n.uri, n.sub, n.sid, now, keep_until],
    )
    .await?;
    Ok(())
}

async fn logout(
    db: &mut impl Conn,
    sid: &str,
    now: UnixTime,
    notices: &[Notice],
    keep_until: UnixTime,
    audit_event: &Event,
) -> Result<bool, StoreError> {
    let ended =
        db.exec("UPDATE sessions SET ended_at = $1 WHERE sid = $2 AND ended_at IS NULL", args![now, sid]).await?;
    if ended == 0 {
        return Ok(false);
    }
    db.exec("UPDATE access_tokens SET revoked_at = $1 WHERE sid = $2 AND revoked_at IS NULL", args![now, sid]).await?;
    // OIDC Core §11: refresh tokens granted offline_access outlive the session.
    db.exec(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE sid = $2 AND offline = FALSE AND revoked_at IS NULL",
        args![now, sid],
    )
    .await?;
    for n in notices {
        queue_notice(db, n, now, keep_until).await?;
    }
    audit::insert(db, audit_event).await?;
    Ok(true)
}

#[async_trait]
impl<E: Engine> LogoutStore for SqlStore<E> {
    async fn logout_session(
        &self,
        sid: &str,
        now: UnixTime,
        notices: &[Notice],
        keep_until: UnixTime,
        audit_event: &Event,
    ) -> Result<bool, StoreError> {
        let (sid, notices, audit_event) = (sid.to_owned(), notices.to_vec(), audit_event.clone());
        self.write(move |db| Box::pin(async move { logout(db, &sid, now, &notices, keep_until, &audit_event).await }))
            .await
    }

    async fn deliveries_page(
        &self,
        status: Option<&str>,
        before: Option<(UnixTime, String)>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let status = status.map(str::to_owned);
        let (before_at, before_id) = before.unzip();
        let limit = i64::from(limit);
        self.read(move |db| {
            Box::pin(async move {
                let mut c = Conditions::default();
                c.when("status = ?", status.as_ref());
                if let (Some(at), Some(id)) = (&before_at, &before_id) {
                    c.args.push(Value::from(at));
                    c.args.push(Value::from(id));
                    let (a, b) = (c.args.len() - 1, c.args.len());
                    c.raw(&format!("(created_at < ${a} OR (created_at = ${a} AND id > ${b}))"));
                }
                let sql = format!(
                    "SELECT {COLUMNS} FROM logout_deliveries{} ORDER BY created_at DESC, id LIMIT {}",
                    c.where_sql(),
                    c.next_placeholder()
                );
                c.args.push(Value::from(&limit));
                db.fetch_all(&sql, &c.args).await
            })
        })
        .await
    }

    async fn retry_delivery(&self, id: &str, now: UnixTime, audit_event: &Event) -> Result<Option<bool>, StoreError> {
        let (id, audit_event) = (id.to_owned(), audit_event.clone());
        self.write(move |db| {
            Box::pin(async move {
                let Some(status) =
                    db.scalar::<String>("SELECT status FROM logout_deliveries WHERE id = $1", args![id]).await?
                else {
                    return Ok(None);
                };
                if status == "delivered" {
                    return Ok(Some(false));
                }
                // Due at once, with its attempts counted afresh; any claim is dropped.
                db.exec(
                    "UPDATE logout_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1, \
                     claimed_by = NULL, claimed_until = 0, expires_at = CASE WHEN expires_at < $2 THEN $2 \
                     ELSE expires_at END WHERE id = $3",
                    args![now, now + 86_400, id],
                )
                .await?;
                audit::insert(db, &audit_event).await?;
                Ok(Some(true))
            })
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        holder: &str,
        now: UnixTime,
        claim_until: UnixTime,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        // The outer conditions are re-checked on the row actually updated, so two
        // workers never claim one notice; PostgreSQL also skips rows another worker
        // is claiming instead of waiting for them.
        let skip_locked = if E::BACKEND == Backend::Postgres { "FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE logout_deliveries SET claimed_by = $1, claimed_until = $2 \
             WHERE id IN (SELECT id FROM logout_deliveries WHERE status = 'pending' AND next_attempt_at <= $3 \
                          AND claimed_until < $3 ORDER BY next_attempt_at LIMIT $4 {skip_locked}) \
             AND status = 'pending' AND claimed_until < $3 RETURNING {COLUMNS}"
        );
        let holder = holder.to_owned();
        self.write(move |db| Box::pin(async move { db.fetch_all(&sql, args![holder, claim_until, now, limit]).await }))
            .await
    }

    async fn record_attempt(
        &self,
        id: &str,
        holder: &str,
        now: UnixTime,
        result: &AttemptRecord,
    ) -> Result<bool, StoreError> {
        let (status, next, delivered_at, last_status, last_error) = match result {
            AttemptRecord::Delivered { status } => ("delivered", now, Some(now), Some(*status), None),
            AttemptRecord::Retry { next_attempt_at, status, error } => {
                ("pending", *next_attempt_at, None, *status, Some(error.clone()))
            }
            AttemptRecord::Failed { status, error } => ("failed", now, None, *status, Some(error.clone())),
        };
        let (id, holder) = (id.to_owned(), holder.to_owned());
        self.write(move |db| {
            Box::pin(async move {
                let n = db
                    .exec(
                        "UPDATE logout_deliveries SET status = $1, attempts = attempts + 1, next_attempt_at = $2, \
                         delivered_at = $3, last_status = $4, last_error = $5, claimed_by = NULL, claimed_until = 0 \
                         WHERE id = $6 AND claimed_by = $7",
                        args![status, next, delivered_at, last_status, last_error, id, holder],
                    )
                    .await?;
                Ok(n > 0)
            })
        })
        .await
    }

    async fn deliveries(&self, limit: i64) -> Result<Vec<Delivery>, StoreError> {
        self.read(move |db| {
            Box::pin(async move {
                db.fetch_all(
                    &format!("SELECT {COLUMNS} FROM logout_deliveries ORDER BY created_at DESC, id LIMIT $1"),
                    args![limit],
                )
                .await
            })
        })
        .await
    }

    async fn delivery_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(|db| {
            Box::pin(async move {
                db.fetch_all("SELECT status, COUNT(*) FROM logout_deliveries GROUP BY status ORDER BY status", &[])
                    .await
            })
        })
        .await
    }
}
