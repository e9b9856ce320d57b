//! A person's credentials beside their password: authenticator apps (TOTP), recovery
//! codes and passkeys, one row each. Whether a presented credential is right, and
//! whether its counter may move, are the core's decisions (`khoa_core::totp`,
//! `khoa_core::recovery`, `khoa_core::authn`); the store keeps them atomic: a counter
//! moves by compare-and-swap, a recovery code is used by a conditional write, and every
//! change is written with its audit event.

use crate::audit;
use crate::db::{args, Conn, FromRow, Row};
use crate::engine::{Engine, SqlStore};
use crate::users::for_user;
use crate::StoreError;
use async_trait::async_trait;
use khoa_core::audit::Event;
use khoa_core::authn::Method;
use khoa_core::UnixTime;

/// A stored credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub id: i64,
    pub user_id: i64,
    pub method: Method,
    /// The person's name for it ("Phone", "YubiKey").
    pub name: Option<String>,
    /// What a presented credential is found by: a passkey's credential id, a recovery
    /// code's SHA-256.
    pub lookup: Option<String>,
    /// What verifying it takes: the sealed TOTP secret, the passkey.
    pub data: String,
    /// The last accepted TOTP time step, a passkey's signature counter.
    pub counter: i64,
    pub created_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
    /// A recovery code's use.
    pub used_at: Option<UnixTime>,
}

/// A credential about to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential {
    pub user_id: i64,
    pub method: Method,
    pub name: Option<String>,
    pub lookup: Option<String>,
    pub data: String,
    pub counter: i64,
    pub created_at: UnixTime,
}

#[async_trait]
pub trait CredentialStore: Send + Sync + 'static {
    /// Stores the credential and `audit`. `Conflict("credential")` when its lookup is
    /// taken for its kind, `Conflict("user")` when there is no such user.
    async fn insert_credential(&self, credential: &NewCredential, audit: &Event) -> Result<Credential, StoreError>;
    /// The user's credentials, oldest first, used recovery codes left out.
    async fn credentials(&self, user_id: i64) -> Result<Vec<Credential>, StoreError>;
    /// The credential of `method` found by `lookup` (a passkey presented alone).
    async fn credential_by_lookup(&self, method: Method, lookup: &str) -> Result<Option<Credential>, StoreError>;
    /// Moves the credential's counter from `expected` to `counter` and notes its use at
    /// `now`, if it is still `expected`: `true` when moved. Of two uses at once with
    /// the same code or signature, one wins.
    async fn swap_counter(&self, id: i64, expected: i64, counter: i64, now: UnixTime) -> Result<bool, StoreError>;
    /// As [`Self::swap_counter`], replacing what verifying it takes too (a passkey
    /// keeps its counter and flags inside `data`).
    async fn swap_data(
        &self,
        id: i64,
        expected: i64,
        counter: i64,
        data: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError>;
    /// Renames the user's credential `id` (theirs only) and records `audit`.
    async fn rename_credential(&self, user_id: i64, id: i64, name: &str, audit: &Event) -> Result<bool, StoreError>;
    /// Uses the user's unused recovery code whose hash is `lookup`, and records `audit`:
    /// `true` when there was one (it is used now, once).
    async fn use_recovery_code(
        &self,
        user_id: i64,
        lookup: &str,
        now: UnixTime,
        audit: &Event,
    ) -> Result<bool, StoreError>;
    /// Replaces the user's recovery codes by these hashes (the old ones, used or not,
    /// go), and records `audit`, in one transaction.
    async fn replace_recovery_codes(
        &self,
        user_id: i64,
        hashes: &[String],
        now: UnixTime,
        audit: &Event,
    ) -> Result<(), StoreError>;
    /// Removes the user's credential `id` (theirs only) and records `audit`: `true` when
    /// removed.
    async fn delete_credential(&self, user_id: i64, id: i64, audit: &Event) -> Result<bool, StoreError>;
    /// Removes every credential of the user but the password (apps, passkeys, recovery
    /// codes) and records
    /// `audit` with how many went, in one transaction: an administrator's reset for a
    /// person who lost their factors. How many were removed.
    async fn reset_credentials(&self, user_id: i64, audit: &Event) -> Result<u64, StoreError>;
}

const COLUMNS: &str = "id, user_id, kind, name, lookup, data, counter, created_at, last_used_at, used_at";

impl FromRow for Credential {
    fn from_row(r: &mut Row) -> Result<Self, StoreError> {
        let id = r.take()?;
        let user_id = r.take()?;
        let kind: String = r.take()?;
        Ok(Credential {
            id,
            user_id,
            method: Method::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("credentials.kind: {kind:?}")))?,
            name: r.take()?,
            lookup: r.take()?,
            data: r.take()?,
            counter: r.take()?,
            created_at: r.take()?,
            last_used_at: r.take()?,
            used_at: r.take()?,
        })
    }
}

async fn insert(db: &mut impl Conn, c: &NewCredential) -> Result<Credential, StoreError> {
    db.fetch_one(
        &format!(
            "INSERT INTO credentials (user_id, kind, name, lookup, data, counter, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
        ),
        args![c.user_id, c.method.as_str(), c.name, c.lookup, c.data, c.counter, c.created_at],
    )
    .await
    .map_err(StoreError::conflict_as("credential"))
}

/// Runs `sql`, a change to one of `user_id`'s credentials, and records `audit_event`
/// with it when a row changed: `true` then.
async fn one_audited(
    db: &mut impl Conn,
    sql: &str,
    args: &[crate::db::Value<'_>],
    user_id: i64,
    audit_event: &Event,
) -> Result<bool, StoreError> {
    let changed = db.exec(sql, args).await? == 1;
    if changed {
        audit::insert(db, &for_user(audit_event, user_id)).await?;
    }
    Ok(changed)
}

/// The counter of credential `id` from `expected` to `counter` (and its data, when
/// given), its use noted at `now`: `true` when it was still `expected`.
async fn swap<E: Engine>(
    store: &SqlStore<E>,
    id: i64,
    expected: i64,
    counter: i64,
    data: Option<String>,
    now: UnixTime,
) -> Result<bool, StoreError> {
    store
        .write(move |db| {
            Box::pin(async move {
                let n = db
                    .exec(
                        "UPDATE credentials SET counter = $1, data = COALESCE($2, data), last_used_at = $3 \
                         WHERE id = $4 AND counter = $5",
                        args![counter, data, now, id, expected],
                    )
                    .await?;
                Ok(n == 1)
            })
        })
        .await
}

#[async_trait]
impl<E: Engine> CredentialStore for SqlStore<E> {
    async fn insert_credential(&self, c: &NewCredential, audit_event: &Event) -> Result<Credential, StoreError> {
        let (c, audit_event) = (c.clone(), audit_event.clone());
        self.write(move |db| {
            Box::pin(async move {
                let exists: Option<i64> = db.scalar("SELECT id FROM users WHERE id = $1", args![c.user_id]).await?;
                if exists.is_none() {
                    return Err(StoreError::Conflict("user"));
                }
                let stored = insert(db, &c).await?;
                audit::insert(db, &for_user(&audit_event, c.user_id)).await?;
                Ok(stored)
            })
        })
        .await
    }

    async fn credentials(&self, user_id: i64) -> Result<Vec<Credential>, StoreError> {
        self.read(move |db| {
            Box::pin(async move {
                db.fetch_all(
                    &format!("SELECT {COLUMNS} FROM credentials WHERE user_id = $1 AND used_at IS NULL ORDER BY id"),
                    args![user_id],
                )
                .await
            })
        })
        .await
    }

    async fn credential_by_lookup(&self, method: Method, lookup: &str) -> Result<Option<Credential>, StoreError> {
        let lookup = lookup.to_owned();
        self.read(move |db| {
            Box::pin(async move {
                db.fetch_optional(
                    &format!("SELECT {COLUMNS} FROM credentials WHERE kind = $1 AND lookup = $2"),
                    args![method.as_str(), lookup],
                )
                .await
            })
        })
        .await
    }

    async fn swap_counter(&self, id: i64, expected: i64, counter: i64, now: UnixTime) -> Result<bool, StoreError> {
        swap(self, id, expected, counter, None, now).await
    }

    async fn swap_data(
        &self,
        id: i64,
        expected: i64,
        counter: i64,
        data: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        swap(self, id, expected, counter, Some(data.to_owned()), now).await
    }

    async fn rename_credential(
        &self,
        user_id: i64,
        id: i64,
        name: &str,
        audit_event: &Event,
    ) -> Result<bool, StoreError> {
        let (name, audit_event) = (name.to_owned(), audit_event.clone());
        self.write(move |db| {
            Box::pin(async move {
                let sql = "UPDATE credentials SET name = $1 WHERE id = $2 AND user_id = $3";
                one_audited(db, sql, args![name, id, user_id], user_id, &audit_event).await
            })
        })
        .await
    }

    async fn use_recovery_code(
        &self,
        user_id: i64,
        lookup: &str,
        now: UnixTime,
        audit_event: &Event,
    ) -> Result<bool, StoreError> {
        let (lookup, audit_event) = (lookup.to_owned(), audit_event.clone());
        self.write(move |db| {
            Box::pin(async move {
                let sql = "UPDATE credentials SET used_at = $1, last_used_at = $1 \
                           WHERE user_id = $2 AND kind = $3 AND lookup = $4 AND used_at IS NULL";
                let kind = Method::RecoveryCode.as_str();
                one_audited(db, sql, args![now, user_id, kind, lookup], user_id, &audit_event).await
            })
        })
        .await
    }

    async fn replace_recovery_codes(
        &self,
        user_id: i64,
        hashes: &[String],
        now: UnixTime,
        audit_event: &Event,
    ) -> Result<(), StoreError> {
        let (hashes, audit_event) = (hashes.to_vec(), audit_event.clone());
        self.write(move |db| {
            Box::pin(async move {
                db.exec(
                    "DELETE FROM credentials WHERE user_id = $1 AND kind = $2",
                    args![user_id, Method::RecoveryCode.as_str()],
                )
                .await?;
                for hash in hashes {
                    let code = NewCredential {
                        user_id,
                        method: Method::RecoveryCode,
                        name: None,
                        lookup: Some(hash),
                        data: String::new(),
                        counter: 0,
                        created_at: now,
                    };
                    insert(db, &code).await?;
                }
                audit::insert(db, &for_user(&audit_event, user_id)).await?;
                Ok(())
            })
        })
        .await
    }

    async fn reset_credentials(&self, user_id: i64, audit_event: &Event) -> Result<u64, StoreError> {
        let audit_event = audit_event.clone();
        self.write(move |db| {
            Box::pin(async move {
                let n = db
                    .exec("DELETE FROM credentials WHERE user_id = $1 AND kind <> 'password'", args![user_id])
                    .await?;
                let mut event = for_user(&audit_event, user_id);
                event.detail["removed"] = n.into();
                audit::insert(db, &event).await?;
                Ok(n)
            })
        })
        .await
    }

    async fn delete_credential(&self, user_id: i64, id: i64, audit_event: &Event) -> Result<bool, StoreError> {
        let audit_event = audit_event.clone();
        self.write(move |db| {
            Box::pin(async move {
                let sql = "DELETE FROM credentials WHERE id = $1 AND user_id = $2";
                one_audited(db, sql, args![id, user_id], user_id, &audit_event).await
            })
        })
        .await
    }
}
