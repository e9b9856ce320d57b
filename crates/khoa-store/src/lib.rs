//! khoa's storage: one [`Store`] trait, two backends (SQLite, PostgreSQL).
//!
//! Both backends run the very same SQL (written once in [`sql`]); only the migrations
//! and connection setup differ. Rules that must hold across several server processes
//! (uniqueness, single use, rotation) are enforced by the database itself.

mod error;
mod postgres;
mod sql;
mod sqlite;

pub use error::StoreError;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use khoa_core::client::Client;
use khoa_core::keyring::KeyTimeline;
use khoa_core::user::{NewUser, User};
use khoa_core::UnixTime;
use std::sync::Arc;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A signing key as stored: its timeline, public JWK (JSON) and sealed private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub timeline: KeyTimeline,
    pub public_jwk: String,
    pub private_key_sealed: Vec<u8>,
}

/// Everything khoa keeps. Every method is one short transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// Applies pending migrations (idempotent, safe to run from several processes).
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Readiness: the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// A counter bumped in the same transaction as every change to clients, users or
    /// keys, so that every server process can notice changes made elsewhere (by the
    /// command line or another process) and refresh its caches.
    async fn change_epoch(&self) -> Result<i64, StoreError>;

    /// `Conflict` when the client_id exists.
    async fn insert_client(&self, client: &Client) -> Result<(), StoreError>;
    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError>;
    async fn clients(&self) -> Result<Vec<Client>, StoreError>;
    /// `true` when a client was deleted.
    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError>;
    /// The longest access or ID token lifetime any client overrides to (seconds).
    async fn longest_client_token_lifetime(&self) -> Result<Option<i64>, StoreError>;

    /// `Conflict` when the username is taken. Returns the user with its new stable id.
    async fn insert_user(&self, user: &NewUser) -> Result<User, StoreError>;
    async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError>;
    async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError>;
    async fn users(&self) -> Result<Vec<User>, StoreError>;
    async fn delete_user(&self, username: &str) -> Result<bool, StoreError>;
    async fn set_password_hash(&self, username: &str, hash: &str, now: UnixTime) -> Result<bool, StoreError>;

    /// `Conflict` when a key of the same algorithm and generation exists (another
    /// process generated or rotated at the same moment).
    async fn insert_signing_key(&self, key: &StoredKey) -> Result<(), StoreError>;
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError>;
}

/// Opens the store named by a `sqlite://…` or `postgres://…` URL. SQLite files are
/// created when missing. Migrations are not applied here: call [`Store::migrate`].
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}
