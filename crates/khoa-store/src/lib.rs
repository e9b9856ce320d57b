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
use khoa_core::code::AuthorizationCode;
use khoa_core::keyring::KeyTimeline;
use khoa_core::session::{Interaction, Session};
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

/// The access token to record when a code is redeemed (its other fields come from
/// the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccessToken {
    pub jti: String,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
}

/// An issued access token as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenRecord {
    pub jti: String,
    pub grant_id: String,
    pub client_id: String,
    pub user_id: Option<i64>,
    pub sid: Option<String>,
    pub scope: String,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

/// What happened when a client presented a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redemption {
    /// Consumed now, by this client; the access token was recorded with it.
    Redeemed(Box<AuthorizationCode>),
    /// Consumed before: every token issued from it has now been revoked (RFC 6749 §4.1.2).
    Replayed {
        revoked: u64,
    },
    /// Not yet consumed, but issued to another client; left untouched.
    OtherClient,
    Unknown,
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

    async fn insert_interaction(&self, interaction: &Interaction) -> Result<(), StoreError>;
    /// An interaction that has not expired at `now`.
    async fn interaction(&self, id_hash: &str, now: UnixTime) -> Result<Option<Interaction>, StoreError>;
    async fn set_interaction_session(&self, id_hash: &str, sid: &str) -> Result<bool, StoreError>;
    /// Ends an interaction; `true` for exactly one caller (so it completes once).
    async fn delete_interaction(&self, id_hash: &str) -> Result<bool, StoreError>;

    async fn insert_session(&self, session: &Session) -> Result<(), StoreError>;
    async fn session(&self, id_hash: &str) -> Result<Option<Session>, StoreError>;
    async fn session_by_sid(&self, sid: &str) -> Result<Option<Session>, StoreError>;
    /// Marks a session ended; `true` if it was active.
    async fn end_session(&self, sid: &str, now: UnixTime) -> Result<bool, StoreError>;
    /// Clients that received a code in the session, in the order they first did.
    async fn session_clients(&self, sid: &str) -> Result<Vec<String>, StoreError>;

    /// The scope the user granted the client, if any.
    async fn consent(&self, user_id: i64, client_id: &str) -> Result<Option<String>, StoreError>;
    async fn grant_consent(&self, user_id: i64, client_id: &str, scope: &str, now: UnixTime) -> Result<(), StoreError>;

    /// Stores a new code and records its client in the code's session.
    async fn insert_code(&self, code: &AuthorizationCode) -> Result<(), StoreError>;
    /// Consumes a code for `client_id` atomically (RFC 6749 §4.1.2: at most once) and
    /// records `token` as issued from it.
    async fn redeem_code(
        &self,
        code_hash: &str,
        client_id: &str,
        now: UnixTime,
        token: &NewAccessToken,
    ) -> Result<Redemption, StoreError>;

    async fn access_token(&self, jti: &str) -> Result<Option<AccessTokenRecord>, StoreError>;
    /// Revokes every access token issued from `grant_id`; returns how many.
    async fn revoke_grant(&self, grant_id: &str, now: UnixTime) -> Result<u64, StoreError>;

    /// `blocked_until` for a throttling key, if failures are recorded.
    async fn login_blocked_until(&self, key: &str) -> Result<Option<UnixTime>, StoreError>;
    /// Counts one more failure (forgetting failures older than `policy.window`) and
    /// returns until when the key is blocked.
    async fn record_login_failure(
        &self,
        key: &str,
        now: UnixTime,
        policy: &khoa_core::throttle::ThrottlePolicy,
    ) -> Result<UnixTime, StoreError>;
    async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError>;
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
