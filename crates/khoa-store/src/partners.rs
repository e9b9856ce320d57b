//! TCONNECT partners and the nonces their login payloads used.

use crate::audit;
use crate::db::{args, change, Conn, FromRow, Row};
use crate::engine::{Engine, SqlStore};
use crate::StoreError;
use async_trait::async_trait;
use khoa_core::audit::Event;
use khoa_core::UnixTime;

#[async_trait]
pub trait PartnerStore: Send + Sync + 'static {
    /// `Conflict` when the code exists.
    async fn insert_partner(&self, partner: &Partner, audit: &Event) -> Result<(), StoreError>;
    async fn partner(&self, code: &str) -> Result<Option<Partner>, StoreError>;
    async fn partners(&self) -> Result<Vec<Partner>, StoreError>;
    /// `true` when a partner was deleted (and `audit` recorded).
    async fn delete_partner(&self, code: &str, audit: &Event) -> Result<bool, StoreError>;
    /// Records that `partner` used `nonce` (remembered until `expires_at`); `false`
    /// when it was used before (a replay).
    async fn use_partner_nonce(&self, partner: &str, nonce: &str, expires_at: UnixTime) -> Result<bool, StoreError>;
}

/// A TCONNECT partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partner {
    pub code: String,
    pub client_id: String,
    /// The 256-bit key, sealed under the master key (AAD = `partner:` + code).
    pub key_sealed: Vec<u8>,
    /// Login payloads must carry a fresh `timestamp` and an unused `nonce`.
    pub require_nonce: bool,
    pub created_at: UnixTime,
}

const COLUMNS: &str = "code, client_id, key_sealed, require_nonce, created_at";

impl FromRow for Partner {
    fn from_row(r: &mut Row) -> Result<Self, StoreError> {
        Ok(Partner {
            code: r.take()?,
            client_id: r.take()?,
            key_sealed: r.take()?,
            require_nonce: r.take()?,
            created_at: r.take()?,
        })
    }
}

#[async_trait]
impl<E: Engine> PartnerStore for SqlStore<E> {
    async fn insert_partner(&self, p: &Partner, audit_event: &Event) -> Result<(), StoreError> {
        let (p, audit_event) = (p.clone(), audit_event.clone());
        self.write(move |db| {
            Box::pin(async move {
                change(
                    db,
                    &format!("INSERT INTO partners ({COLUMNS}) VALUES ($1, $2, $3, $4, $5)"),
                    args![p.code, p.client_id, p.key_sealed, p.require_nonce, p.created_at],
                )
                .await
                .map_err(StoreError::conflict_as("partner"))?;
                audit::insert(db, &audit_event).await
            })
        })
        .await
    }

    async fn partner(&self, code: &str) -> Result<Option<Partner>, StoreError> {
        let code = code.to_owned();
        self.read(move |db| {
            Box::pin(async move {
                db.fetch_optional(&format!("SELECT {COLUMNS} FROM partners WHERE code = $1"), args![code]).await
            })
        })
        .await
    }

    async fn partners(&self) -> Result<Vec<Partner>, StoreError> {
        self.read(|db| {
            Box::pin(async move { db.fetch_all(&format!("SELECT {COLUMNS} FROM partners ORDER BY code"), &[]).await })
        })
        .await
    }

    async fn delete_partner(&self, code: &str, audit_event: &Event) -> Result<bool, StoreError> {
        let (code, audit_event) = (code.to_owned(), audit_event.clone());
        self.write(move |db| {
            Box::pin(async move {
                let deleted = change(db, "DELETE FROM partners WHERE code = $1", args![code]).await? > 0;
                if deleted {
                    audit::insert(db, &audit_event).await?;
                }
                Ok(deleted)
            })
        })
        .await
    }

    async fn use_partner_nonce(&self, partner: &str, nonce: &str, expires_at: UnixTime) -> Result<bool, StoreError> {
        let key = format!("{partner}|{nonce}");
        self.write(move |db| {
            Box::pin(async move {
                let n = db
                    .exec(
                        "INSERT INTO partner_nonces (key, expires_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                        args![key, expires_at],
                    )
                    .await?;
                Ok(n == 1)
            })
        })
        .await
    }
}
