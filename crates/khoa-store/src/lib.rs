//! khoa's storage: one trait per aggregate, composed into [`Store`]; two backends
//! (SQLite on rusqlite, PostgreSQL on sqlx).
//!
//! Each aggregate's file holds its trait and its SQL, written once against
//! [`db::Conn`] and run by both backends; only connection handling differs
//! ([`sqlite`], [`postgres`]). Rules that must hold across several server processes
//! (uniqueness, single use, rotation) are enforced by the database itself.
//!
//! | aggregate | trait | file |
//! |---|---|---|
//! | clients | [`ClientStore`] | `clients.rs` |
//! | the audit trail | [`AuditStore`] | `audit.rs` |
//! | users | [`UserStore`] | `users.rs` |
//! | signing keys | [`KeyStore`] | `keys.rs` |
//! | sessions, interactions, consents | [`SessionStore`] | `sessions.rs` |
//! | authorization codes | [`CodeStore`] | `codes.rs` |
//! | access and refresh tokens | [`TokenStore`] | `tokens.rs` |
//! | logout and its back-channel outbox | [`LogoutStore`] | `logout.rs` |
//! | login throttle | [`ThrottleStore`] | `throttle.rs` |
//! | TCONNECT partners | [`PartnerStore`] | `partners.rs` |
//! | migrations, leases, cleanup | [`MaintenanceStore`] | `maintenance.rs` |

mod accounts;
mod audit;
pub mod backup;
mod clients;
mod codes;
mod credentials;
mod db;
mod engine;
mod error;
mod keys;
mod logout;
mod maintenance;
mod migrations;
mod partners;
mod postgres;
mod sessions;
mod sqlite;
mod throttle;
mod tokens;
mod users;

pub use accounts::AccountStore;
pub use audit::{AuditFilter, AuditRecord, AuditStore};
pub use clients::ClientStore;
pub use codes::{CodeCheck, CodeStore, Redemption, RefreshFor};
pub use credentials::{Credential, CredentialStore, NewCredential};
pub use engine::SqlStore;
pub use error::StoreError;
pub use keys::{KeyStore, StoredKey};
pub use logout::{AttemptRecord, Delivery, LogoutStore, Notice};
pub use maintenance::{Expiring, MaintenanceStore};
pub use migrations::{migrate_to, Schema};
pub use partners::{Partner, PartnerStore};
pub use postgres::{PostgresEngine, PostgresStore};
pub use sessions::SessionStore;
pub use sqlite::{SqliteEngine, SqliteStore};
pub use throttle::ThrottleStore;
pub use tokens::{
    AccessTokenRecord, NewAccessToken, RefreshSuccessor, RefreshToken, RefreshTokenRecord, Rotation, SuccessorRow,
    TokenStore,
};
pub use users::{ActiveSession, Consent, EndedSessions, UserChange, UserQuery, UserRef, UserStore};

use std::sync::Arc;

/// Every aggregate's trait, for `use khoa_store::prelude::*`.
pub mod prelude {
    pub use crate::{
        AccountStore, AuditStore, ClientStore, CodeStore, CredentialStore, KeyStore, LogoutStore, MaintenanceStore,
        PartnerStore, SessionStore, Store, ThrottleStore, TokenStore, UserStore,
    };
}

/// SQL statements and transactions run so far by every store in this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatementCount {
    /// Every statement sent to the database, BEGIN and COMMIT (or ROLLBACK) included.
    pub statements: u64,
    pub transactions: u64,
}

/// Reads the process-wide statement counters (exported as `khoa_sql_statements_total`
/// and `khoa_sql_transactions_total` at `/metrics`).
pub fn statements() -> StatementCount {
    let (statements, transactions) = db::counters();
    StatementCount { statements, transactions }
}

/// What a conditional update (If-Match: a revision checked in the statement that
/// writes) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Updated {
    /// Written; the new revision.
    Done(i64),
    /// No such row.
    Missing,
    /// It changed since the revision the caller read (a lost update refused).
    Stale,
}

impl Updated {
    /// From whether the update wrote, and the row's revision read after it.
    pub(crate) fn of(written: bool, revision: Option<i64>) -> Self {
        match (written, revision) {
            (true, Some(revision)) => Self::Done(revision),
            (_, None) => Self::Missing,
            (false, Some(_)) => Self::Stale,
        }
    }
}

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Everything khoa keeps: every aggregate's store. Every method is one short
/// transaction. Code that needs one aggregate takes its trait (`&dyn ClientStore`).
pub trait Store:
    ClientStore
    + AccountStore
    + CredentialStore
    + AuditStore
    + UserStore
    + KeyStore
    + SessionStore
    + CodeStore
    + TokenStore
    + LogoutStore
    + ThrottleStore
    + PartnerStore
    + MaintenanceStore
{
}

impl<T> Store for T where
    T: ClientStore
        + AccountStore
        + CredentialStore
        + AuditStore
        + UserStore
        + KeyStore
        + SessionStore
        + CodeStore
        + TokenStore
        + LogoutStore
        + ThrottleStore
        + PartnerStore
        + MaintenanceStore
{
}

/// Opens the store named by a `sqlite://…` or `postgres://…` URL. SQLite files are
/// created when missing. Migrations are not applied here: call
/// [`MaintenanceStore::migrate`].
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}
