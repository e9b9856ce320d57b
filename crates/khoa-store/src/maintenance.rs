//! What keeps the store itself running: migrations, readiness, the change epoch the
//! caches watch, job leases, and the cleanup of expired rows.

use crate::db::{args, Conn};
use crate::engine::{Engine, SqlStore};
use crate::{Backend, StoreError};
use async_trait::async_trait;
use khoa_core::UnixTime;

#[async_trait]
pub trait MaintenanceStore: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// Applies pending migrations (idempotent, safe to run from several processes),
    /// then gives every user without one its username key
    /// (`khoa_core::user::username_key`), unless another user has that key.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Where the schema stands, without changing anything (`khoa migrate --check`).
    async fn schema(&self) -> Result<crate::migrations::Schema, StoreError>;
    /// Users whose username's key another user has (so it could not be given them),
    /// each as (its username, the username that has the key): accounts made before
    /// usernames were unique by key, which an operator should rename.
    async fn username_collisions(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Readiness: the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// A counter bumped in the same transaction as every change to clients, users,
    /// keys or partners, so that every server process can notice changes made
    /// elsewhere (by the command line or another process) and refresh its caches.
    async fn change_epoch(&self) -> Result<i64, StoreError>;
    /// Takes or renews the lease `name` for `holder` until `until`; `false` while
    /// another holder's lease runs.
    async fn acquire_lease(&self, name: &str, holder: &str, now: UnixTime, until: UnixTime)
        -> Result<bool, StoreError>;
    /// Deletes at most `limit` rows of `kind` that expired before `before`.
    async fn delete_expired(&self, kind: Expiring, before: UnixTime, limit: i64) -> Result<u64, StoreError>;
    /// The expiry time of the oldest row of `kind` that expired before `before`.
    async fn oldest_expired(&self, kind: Expiring, before: UnixTime) -> Result<Option<UnixTime>, StoreError>;
    /// Rows per table, for `/metrics`.
    async fn row_counts(&self) -> Result<Vec<(&'static str, i64)>, StoreError>;
}

/// Rows a cleanup pass deletes once they have expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiring {
    AuthorizationCodes,
    AccessTokens,
    RefreshTokens,
    Sessions,
    Interactions,
    LoginThrottle,
    LogoutDeliveries,
    PartnerNonces,
    AccountTokens,
}

impl Expiring {
    pub const ALL: [Expiring; 9] = [
        Self::AuthorizationCodes,
        Self::AccessTokens,
        Self::RefreshTokens,
        Self::Sessions,
        Self::Interactions,
        Self::LoginThrottle,
        Self::LogoutDeliveries,
        Self::PartnerNonces,
        Self::AccountTokens,
    ];

    pub fn table(self) -> &'static str {
        match self {
            Self::AuthorizationCodes => "authorization_codes",
            Self::AccessTokens => "access_tokens",
            Self::RefreshTokens => "refresh_tokens",
            Self::Sessions => "sessions",
            Self::Interactions => "interactions",
            Self::LoginThrottle => "login_throttle",
            Self::LogoutDeliveries => "logout_deliveries",
            Self::PartnerNonces => "partner_nonces",
            Self::AccountTokens => "account_tokens",
        }
    }

    fn key_column(self) -> &'static str {
        match self {
            Self::AuthorizationCodes => "code_hash",
            Self::AccessTokens => "jti",
            Self::RefreshTokens | Self::AccountTokens => "token_hash",
            Self::Sessions | Self::Interactions => "id_hash",
            Self::LoginThrottle | Self::PartnerNonces => "key",
            Self::LogoutDeliveries => "id",
        }
    }

    fn expiry_column(self) -> &'static str {
        match self {
            Self::LoginThrottle => "last_failure_at",
            _ => "expires_at",
        }
    }
}

/// Gives each user without a username key its key, in id order, unless a user already
/// has it (then it stays without, and [`MaintenanceStore::username_collisions`] lists
/// it). Rows keep their keys once given, so a second run reads only the collisions.
async fn backfill_username_keys(db: &mut impl Conn) -> Result<(), StoreError> {
    let keyless: Vec<(i64, String)> =
        db.fetch_all("SELECT id, username FROM users WHERE username_key IS NULL ORDER BY id", &[]).await?;
    for (id, username) in keyless {
        let key = khoa_core::user::username_key(&username);
        db.exec(
            "UPDATE users SET username_key = $1 WHERE id = $2 \
             AND NOT EXISTS (SELECT 1 FROM users other WHERE other.username_key = $1)",
            args![key, id],
        )
        .await?;
    }
    Ok(())
}

#[async_trait]
impl<E: Engine> MaintenanceStore for SqlStore<E> {
    fn backend(&self) -> Backend {
        E::BACKEND
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        // A schema newer than this khoa knows: refused before anything is done, on
        // either backend (an older server must not run on a newer schema).
        if let Some(refusal) = self.schema().await?.refusal() {
            return Err(refusal);
        }
        // Two processes racing on a fresh database: the loser sees the winner's work
        // on its second attempt.
        match self.engine.migrate().await {
            Ok(()) => {}
            Err(_) => self.engine.migrate().await?,
        }
        self.write(|db| Box::pin(async move { backfill_username_keys(db).await })).await
    }

    async fn schema(&self) -> Result<crate::migrations::Schema, StoreError> {
        let exists = match E::BACKEND {
            crate::Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
            }
            crate::Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_name = '_sqlx_migrations' AND table_schema = current_schema()"
            }
        };
        self.read(move |db| {
            Box::pin(async move {
                let tables: i64 = db.scalar(exists, &[]).await?.unwrap_or(0);
                let applied: Vec<(i64,)> = if tables == 0 {
                    vec![]
                } else {
                    db.fetch_all("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version", &[]).await?
                };
                let applied: Vec<i64> = applied.into_iter().map(|(v,)| v).collect();
                Ok(crate::migrations::Schema::of(&applied))
            })
        })
        .await
    }

    async fn username_collisions(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.read(|db| {
            Box::pin(async move {
                let keyless: Vec<(String,)> =
                    db.fetch_all("SELECT username FROM users WHERE username_key IS NULL ORDER BY id", &[]).await?;
                let mut out = Vec::with_capacity(keyless.len());
                for (username,) in keyless {
                    let key = khoa_core::user::username_key(&username);
                    let holder: Option<String> =
                        db.scalar("SELECT username FROM users WHERE username_key = $1", args![key]).await?;
                    out.push((username, holder.unwrap_or_default()));
                }
                Ok(out)
            })
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|db| Box::pin(async move { db.rows("SELECT 1", &[]).await.map(drop) })).await
    }

    async fn change_epoch(&self) -> Result<i64, StoreError> {
        self.read(|db| {
            Box::pin(async move {
                db.scalar("SELECT epoch FROM change_epoch WHERE id = 1", &[])
                    .await?
                    .ok_or_else(|| StoreError::Corrupt("the change epoch row is missing".into()))
            })
        })
        .await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: UnixTime,
        until: UnixTime,
    ) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |db| {
            Box::pin(async move {
                let got: Option<String> = db
                    .scalar(
                        "INSERT INTO job_leases (name, holder, until) VALUES ($1, $2, $3) \
                         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
                         WHERE job_leases.until < $4 OR job_leases.holder = excluded.holder \
                         RETURNING holder",
                        args![name, holder, until, now],
                    )
                    .await?;
                Ok(got.as_deref() == Some(holder.as_str()))
            })
        })
        .await
    }

    async fn delete_expired(&self, kind: Expiring, before: UnixTime, limit: i64) -> Result<u64, StoreError> {
        // By primary key in bounded batches: short transactions, no long locks.
        let (table, key, expiry) = (kind.table(), kind.key_column(), kind.expiry_column());
        let sql =
            format!("DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE {expiry} < $1 LIMIT $2)");
        self.write(move |db| Box::pin(async move { db.exec(&sql, args![before, limit]).await })).await
    }

    async fn oldest_expired(&self, kind: Expiring, before: UnixTime) -> Result<Option<UnixTime>, StoreError> {
        let sql = format!("SELECT MIN({0}) FROM {1} WHERE {0} < $1", kind.expiry_column(), kind.table());
        self.read(move |db| Box::pin(async move { Ok(db.scalar::<Option<i64>>(&sql, args![before]).await?.flatten()) }))
            .await
    }

    async fn row_counts(&self) -> Result<Vec<(&'static str, i64)>, StoreError> {
        self.read(|db| {
            Box::pin(async move {
                let mut out = vec![];
                for table in
                    ["clients", "users", "signing_keys", "session_clients", "consents", "audit_events", "credentials"]
                        .into_iter()
                        .chain(Expiring::ALL.iter().map(|k| k.table()))
                {
                    let n: Option<i64> = db.scalar(&format!("SELECT COUNT(*) FROM {table}"), &[]).await?;
                    out.push((table, n.unwrap_or(0)));
                }
                Ok(out)
            })
        })
        .await
    }
}
