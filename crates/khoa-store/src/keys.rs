//! Signing keys, their private halves sealed under the master key.

use crate::audit;
use crate::db::{args, change, Conn, FromRow, Row};
use crate::engine::{Engine, SqlStore};
use crate::StoreError;
use async_trait::async_trait;
use khoa_core::audit::Event;
use khoa_core::keyring::KeyTimeline;

#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// `Conflict` when a key of the same algorithm and generation exists (another
    /// process generated or rotated at the same moment). `audit` is recorded with the
    /// key's id, algorithm, generation and activation time in its detail.
    async fn insert_signing_key(&self, key: &StoredKey, audit: &Event) -> Result<(), StoreError>;
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError>;
}

/// A signing key as stored: its timeline, public JWK (JSON) and sealed private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub timeline: KeyTimeline,
    pub public_jwk: String,
    pub private_key_sealed: Vec<u8>,
}

const COLUMNS: &str = "kid, alg, generation, public_jwk, private_key_sealed, created_at, activates_at";

impl FromRow for StoredKey {
    fn from_row(r: &mut Row) -> Result<Self, StoreError> {
        let kid = r.take()?;
        let alg: String = r.take()?;
        let generation = r.take()?;
        let public_jwk = r.take()?;
        let private_key_sealed = r.take()?;
        Ok(StoredKey {
            timeline: KeyTimeline {
                alg: alg.parse().map_err(|e: khoa_core::jose::KeyError| StoreError::Corrupt(e.to_string()))?,
                kid,
                generation,
                created_at: r.take()?,
                activates_at: r.take()?,
            },
            public_jwk,
            private_key_sealed,
        })
    }
}

#[async_trait]
impl<E: Engine> KeyStore for SqlStore<E> {
    async fn insert_signing_key(&self, k: &StoredKey, audit_event: &Event) -> Result<(), StoreError> {
        let (k, mut audit_event) = (k.clone(), audit_event.clone());
        self.write(move |db| {
            Box::pin(async move {
                let t = &k.timeline;
                change(
                    db,
                    &format!("INSERT INTO signing_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
                    args![
                        t.kid,
                        t.alg.as_str(),
                        t.generation,
                        k.public_jwk,
                        k.private_key_sealed,
                        t.created_at,
                        t.activates_at
                    ],
                )
                .await
                .map_err(StoreError::conflict_as("signing key generation"))?;
                if let serde_json::Value::Object(detail) = &mut audit_event.detail {
                    detail.insert("kid".into(), t.kid.clone().into());
                    detail.insert("alg".into(), t.alg.as_str().into());
                    detail.insert("generation".into(), t.generation.into());
                    detail.insert("activates_at".into(), t.activates_at.into());
                }
                audit::insert(db, &audit_event).await
            })
        })
        .await
    }

    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.read(|db| {
            Box::pin(async move {
                db.fetch_all(&format!("SELECT {COLUMNS} FROM signing_keys ORDER BY alg, generation"), &[]).await
            })
        })
        .await
    }
}
