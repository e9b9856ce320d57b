//! khoa's storage: one [`Store`] trait, two backends (SQLite, PostgreSQL).
//!
//! Both backends run the very same SQL (written once in [`sql`]); only the migrations
//! and connection setup differ. Rules that must hold across several server processes
//! (uniqueness, single use, rotation) are enforced by the database itself.

mod connections;
mod error;
mod group_commit;
mod postgres;
mod sql;
mod sqlite;

pub use error::StoreError;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

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
    let (statements, transactions) = sql::counters();
    StatementCount { statements, transactions }
}

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

/// A refresh token to store (its handle is known only to the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefreshToken {
    pub token_hash: String,
    pub family_id: String,
    pub client_id: String,
    pub user_id: i64,
    pub sid: Option<String>,
    pub scope: String,
    pub auth_time: UnixTime,
    pub amr: Vec<String>,
    pub offline: bool,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    /// The handle sealed under the master key; kept on the parent for the grace window.
    pub sealed: Vec<u8>,
}

/// A stored refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    pub token_hash: String,
    pub family_id: String,
    pub client_id: String,
    pub user_id: i64,
    pub sid: Option<String>,
    pub scope: String,
    pub auth_time: UnixTime,
    pub amr: Vec<String>,
    pub offline: bool,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    pub rotated_at: Option<UnixTime>,
    pub successor_hash: Option<String>,
    pub successor_sealed: Option<Vec<u8>>,
    pub revoked_at: Option<UnixTime>,
}

impl RefreshTokenRecord {
    pub fn is_live(&self, now: UnixTime) -> bool {
        self.rotated_at.is_none() && self.revoked_at.is_none() && now < self.expires_at
    }
}

/// What happened when a client presented a refresh token for rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// This presentation won: the successor was stored and the access token recorded.
    /// `presented` is the rotated token's record (`rotated_at` now set).
    Rotated {
        presented: Box<RefreshTokenRecord>,
        successor: Box<NewRefreshToken>,
    },
    /// A duplicate within the grace window: the winner's successor (sealed) is handed
    /// out again and the access token recorded; nothing is revoked.
    Grace {
        presented: Box<RefreshTokenRecord>,
        successor: Box<RefreshTokenRecord>,
        sealed: Vec<u8>,
    },
    /// The successor's builder refused (e.g. a scope wider than the one granted):
    /// nothing was changed or recorded.
    Refused,
    /// Presented after its rotation, outside the grace window: the whole family is now
    /// revoked (RFC 9700 §4.14.2).
    Reused {
        revoked: u64,
    },
    Revoked,
    Expired,
    OtherClient,
    Unknown,
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
}

impl Expiring {
    pub const ALL: [Expiring; 8] = [
        Self::AuthorizationCodes,
        Self::AccessTokens,
        Self::RefreshTokens,
        Self::Sessions,
        Self::Interactions,
        Self::LoginThrottle,
        Self::LogoutDeliveries,
        Self::PartnerNonces,
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
        }
    }

    pub(crate) fn key_column(self) -> &'static str {
        match self {
            Self::AuthorizationCodes => "code_hash",
            Self::AccessTokens => "jti",
            Self::RefreshTokens => "token_hash",
            Self::Sessions | Self::Interactions => "id_hash",
            Self::LoginThrottle | Self::PartnerNonces => "key",
            Self::LogoutDeliveries => "id",
        }
    }

    pub(crate) fn expiry_column(self) -> &'static str {
        match self {
            Self::LoginThrottle => "last_failure_at",
            _ => "expires_at",
        }
    }
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

/// A back-channel logout notification to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub id: String,
    pub client_id: String,
    pub uri: String,
    pub sub: String,
    pub sid: String,
}

/// A queued back-channel logout notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub client_id: String,
    pub uri: String,
    pub sub: String,
    pub sid: String,
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
    /// Not yet consumed, but its SSO session has ended (logout) or is gone: a code
    /// outlives no logout. Left untouched; it can never be redeemed.
    SessionEnded,
    Unknown,
}

/// Builds the refresh token to store with a code being redeemed, from the code as
/// consumed (its scope decides whether there is one), or `None`. It owns what it needs:
/// the store may run it on its writer, and more than once (group commit runs a job
/// again alone when its group is rolled back), so it must build the same row each time.
pub type RefreshFor = Box<dyn Fn(&AuthorizationCode) -> Option<NewRefreshToken> + Send + Sync>;

/// The successor of a refresh token presented for rotation. Its handle (`token_hash`,
/// and the handle `sealed` for the grace window) is chosen beforehand; the rest of its
/// row is built by `row` from the presented token's record, read by the rotation
/// itself, or `None` refuses the rotation. The row's own `token_hash` and `sealed` are
/// replaced by these. Like [`RefreshFor`], `row` may run more than once.
pub struct RefreshSuccessor {
    pub token_hash: String,
    pub sealed: Vec<u8>,
    pub row: SuccessorRow,
}

/// Builds a successor's row from the presented token's record (see [`RefreshSuccessor`]).
pub type SuccessorRow = Box<dyn Fn(&RefreshTokenRecord) -> Option<NewRefreshToken> + Send + Sync>;

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
    /// Replaces every field of the client with this client_id; `false` when there is
    /// none. Running servers see the change within a watch interval (the change epoch).
    async fn update_client(&self, client: &Client) -> Result<bool, StoreError>;
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
    /// Logout: in one transaction, ends the session, revokes its access tokens and its
    /// refresh tokens that were not granted `offline_access` (OIDC Core §11), and queues
    /// `deliveries` (back-channel notifications, first attempt at `now`, kept until
    /// `keep_until`). `false` (and nothing queued) if the session had already ended.
    async fn logout_session(
        &self,
        sid: &str,
        now: UnixTime,
        deliveries: &[NewDelivery],
        keep_until: UnixTime,
    ) -> Result<bool, StoreError>;
    /// Claims up to `limit` due notifications for `holder` until `claim_until`; a
    /// notification is claimed by one worker at a time.
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
    /// The newest notifications first.
    async fn deliveries(&self, limit: i64) -> Result<Vec<Delivery>, StoreError>;
    /// Notifications by status.
    async fn delivery_counts(&self) -> Result<Vec<(String, i64)>, StoreError>;
    /// Clients that received a code in the session, in the order they first did.
    async fn session_clients(&self, sid: &str) -> Result<Vec<String>, StoreError>;

    /// The scope the user granted the client, if any.
    async fn consent(&self, user_id: i64, client_id: &str) -> Result<Option<String>, StoreError>;
    async fn grant_consent(&self, user_id: i64, client_id: &str, scope: &str, now: UnixTime) -> Result<(), StoreError>;

    /// Whether `client_id` already redeemed another code with this PKCE challenge.
    async fn code_challenge_reused(
        &self,
        client_id: &str,
        challenge: &str,
        code_hash: &str,
    ) -> Result<bool, StoreError>;
    /// A code as stored, whatever its state (codes never change but for consumption).
    async fn code(&self, code_hash: &str) -> Result<Option<AuthorizationCode>, StoreError>;
    /// Stores a new code and records its client in the code's session.
    async fn insert_code(&self, code: &AuthorizationCode) -> Result<(), StoreError>;
    /// Consumes a code for `client_id` whose session is still active, atomically
    /// (RFC 6749 §4.1.2: at most once), and records `token` (and the refresh token that
    /// `refresh` builds, whose family is the code's hash) as issued from it, in one
    /// transaction. A replay revokes every access and refresh token issued from the code.
    async fn redeem_code(
        &self,
        code_hash: &str,
        client_id: &str,
        now: UnixTime,
        token: &NewAccessToken,
        refresh: RefreshFor,
    ) -> Result<Redemption, StoreError>;

    async fn refresh_token(&self, token_hash: &str) -> Result<Option<RefreshTokenRecord>, StoreError>;
    /// Rotates a refresh token atomically, reading it in the same transaction: exactly
    /// one of any number of concurrent presentations stores `successor`; duplicates
    /// within `grace` seconds of the rotation get the same successor; later ones revoke
    /// the family. `access` is recorded, with the scope of the refresh token handed
    /// out, unless refused.
    async fn rotate_refresh_token(
        &self,
        token_hash: &str,
        client_id: &str,
        now: UnixTime,
        grace: i64,
        successor: RefreshSuccessor,
        access: &NewAccessToken,
    ) -> Result<Rotation, StoreError>;
    /// Revokes every refresh and access token of a family (or of a code's grant).
    async fn revoke_family(&self, family_id: &str, now: UnixTime) -> Result<u64, StoreError>;
    async fn revoke_access_token(&self, jti: &str, now: UnixTime) -> Result<bool, StoreError>;
    /// Records an access token that comes from no code or refresh token
    /// (client_credentials).
    async fn insert_access_token(&self, token: &AccessTokenRecord) -> Result<(), StoreError>;
    /// Starts a token family outside the code flow (a partner's password login): its
    /// first access and refresh token, in one transaction.
    async fn insert_token_family(
        &self,
        access: &AccessTokenRecord,
        refresh: &NewRefreshToken,
    ) -> Result<(), StoreError>;

    /// `Conflict` when the code exists.
    async fn insert_partner(&self, partner: &Partner) -> Result<(), StoreError>;
    async fn partner(&self, code: &str) -> Result<Option<Partner>, StoreError>;
    async fn partners(&self) -> Result<Vec<Partner>, StoreError>;
    async fn delete_partner(&self, code: &str) -> Result<bool, StoreError>;

    /// Takes or renews the lease `name` for `holder` until `until`; `false` while
    /// another holder's lease runs.
    async fn acquire_lease(&self, name: &str, holder: &str, now: UnixTime, until: UnixTime)
        -> Result<bool, StoreError>;
    /// Deletes at most `limit` rows of `kind` that expired before `before`.
    async fn delete_expired(&self, kind: Expiring, before: UnixTime, limit: i64) -> Result<u64, StoreError>;
    /// The expiry time of the oldest row of `kind` that expired before `before`.
    async fn oldest_expired(&self, kind: Expiring, before: UnixTime) -> Result<Option<UnixTime>, StoreError>;
    /// Rows of every table, for operators and the cleanup benchmark.
    async fn row_counts(&self) -> Result<Vec<(&'static str, i64)>, StoreError>;

    async fn access_token(&self, jti: &str) -> Result<Option<AccessTokenRecord>, StoreError>;
    /// Revokes every access token issued from `grant_id`; returns how many.
    async fn revoke_grant(&self, grant_id: &str, now: UnixTime) -> Result<u64, StoreError>;

    /// Counts one more failure (forgetting failures older than `policy.window`) and
    /// returns until when the key is blocked.
    async fn record_login_failure(
        &self,
        key: &str,
        now: UnixTime,
        policy: &khoa_core::throttle::ThrottlePolicy,
    ) -> Result<UnixTime, StoreError>;
    /// Reserves one login attempt under every key, atomically, before its password is
    /// checked: it is counted (as a failure, until [`Store::settle_login_success`])
    /// under all of them while each is under its limit, or under none, and then the
    /// answer is `Blocked` with the time the blocking key allows attempts again. One
    /// conditional write per key, so concurrent attempts (in any process) can never
    /// pass a key's limit.
    async fn reserve_login_attempt(
        &self,
        keys: &[khoa_core::throttle::ThrottleKey],
        now: UnixTime,
    ) -> Result<khoa_core::throttle::Reservation, StoreError>;
    /// The reserved attempt logged in: each key forgets its failures or gets this
    /// attempt back, as its `on_success` says.
    async fn settle_login_success(
        &self,
        keys: &[khoa_core::throttle::ThrottleKey],
        now: UnixTime,
    ) -> Result<(), StoreError>;

    /// Ends every active SSO session of the user named `username` and revokes every
    /// access and refresh token issued to them (offline ones included), queues the
    /// back-channel notifications of the ended sessions (kept until `keep_until`), and
    /// applies `change` to the user — all in one transaction. `None` when there is no
    /// such user (and nothing changed).
    async fn end_user_sessions(
        &self,
        username: &str,
        change: UserChange,
        now: UnixTime,
        keep_until: UnixTime,
    ) -> Result<Option<EndedSessions>, StoreError>;

    /// Clears the sealed successor handle of refresh tokens rotated before `before` (the
    /// grace window is over, so it can never be handed out again); at most `limit`.
    async fn clear_sealed_successors(&self, before: UnixTime, limit: i64) -> Result<u64, StoreError>;

    /// Records that `partner` used `nonce` (remembered until `expires_at`); `false`
    /// when it was used before (a replay).
    async fn use_partner_nonce(&self, partner: &str, nonce: &str, expires_at: UnixTime) -> Result<bool, StoreError>;
}

/// What else happens to a user whose sessions all end (see [`Store::end_user_sessions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserChange {
    /// Nothing: `khoa user revoke-sessions`.
    None,
    /// The password is replaced by this hash.
    Password { hash: String },
    /// The user is deleted (their consents go with them).
    Delete,
}

/// What [`Store::end_user_sessions`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndedSessions {
    pub user_id: i64,
    pub sessions: u64,
    pub tokens: u64,
    pub notifications: u64,
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
