//! The SQL of every [`Store`](crate::Store) method, written once and instantiated for
//! both backends by [`sql_store!`]. Placeholders are `$n`, which SQLite and PostgreSQL
//! both accept; column types are the portable subset (TEXT, BIGINT, BOOLEAN, bytes).

use crate::{StoreError, StoredKey};
use khoa_core::client::{Client, ClientLifetimes, ClientType, GrantType};
use khoa_core::keyring::KeyTimeline;
use khoa_core::user::User;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) const CLIENT_COLUMNS: &str = "client_id, client_secret_hash, is_public, redirect_uris, \
    post_logout_redirect_uris, frontchannel_logout_uri, backchannel_logout_uri, grant_types, scopes, \
    skip_consent, client_name, logo_uri, client_uri, policy_uri, tos_uri, owner, contacts, metadata, \
    id_token_signed_response_alg, authorization_code_lifetime, access_token_lifetime, id_token_lifetime, \
    refresh_token_lifetime, created_at, updated_at, always_issue_refresh_token, resource_server, allowed_origins, \
    previous_secret_hash, previous_secret_expires_at";

pub(crate) const USER_COLUMNS: &str = "id, username, password_hash, email, email_verified, name, \
    phone_number, phone_number_verified, picture, created_at, updated_at";

pub(crate) const KEY_COLUMNS: &str = "kid, alg, generation, public_jwk, private_key_sealed, created_at, activates_at";

/// SQL statements run by this process, BEGIN and COMMIT included (see [`crate::statements`]).
static STATEMENTS: AtomicU64 = AtomicU64::new(0);
/// Transactions begun by this process.
static TRANSACTIONS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn counters() -> (u64, u64) {
    (STATEMENTS.load(Ordering::Relaxed), TRANSACTIONS.load(Ordering::Relaxed))
}

/// `sqlx::query`, counted.
pub(crate) fn query<DB: sqlx::Database>(
    sql: &str,
) -> sqlx::query::Query<'_, DB, <DB as sqlx::Database>::Arguments<'_>> {
    STATEMENTS.fetch_add(1, Ordering::Relaxed);
    sqlx::query(sql)
}

/// `sqlx::query_as`, counted.
pub(crate) fn query_as<'q, DB, O>(
    sql: &'q str,
) -> sqlx::query::QueryAs<'q, DB, O, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    O: for<'r> sqlx::FromRow<'r, DB::Row>,
{
    STATEMENTS.fetch_add(1, Ordering::Relaxed);
    sqlx::query_as(sql)
}

/// `sqlx::query_scalar`, counted.
pub(crate) fn query_scalar<'q, DB, O>(
    sql: &'q str,
) -> sqlx::query::QueryScalar<'q, DB, O, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    (O,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    STATEMENTS.fetch_add(1, Ordering::Relaxed);
    sqlx::query_scalar(sql)
}

/// Counts a transaction as two statements (BEGIN, and its COMMIT or ROLLBACK).
pub(crate) fn count_transaction() {
    STATEMENTS.fetch_add(2, Ordering::Relaxed);
    TRANSACTIONS.fetch_add(1, Ordering::Relaxed);
}

/// `Pool::begin`, counted.
pub(crate) async fn begin<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
) -> Result<sqlx::Transaction<'static, DB>, sqlx::Error> {
    count_transaction();
    pool.begin().await
}

pub(crate) const BUMP_EPOCH: &str = "UPDATE change_epoch SET epoch = epoch + 1 WHERE id = 1";

#[derive(sqlx::FromRow)]
pub(crate) struct ClientRow {
    client_id: String,
    client_secret_hash: Option<String>,
    is_public: bool,
    redirect_uris: String,
    post_logout_redirect_uris: String,
    frontchannel_logout_uri: Option<String>,
    backchannel_logout_uri: Option<String>,
    grant_types: String,
    scopes: String,
    skip_consent: bool,
    client_name: Option<String>,
    logo_uri: Option<String>,
    client_uri: Option<String>,
    policy_uri: Option<String>,
    tos_uri: Option<String>,
    owner: Option<String>,
    contacts: String,
    metadata: String,
    id_token_signed_response_alg: String,
    authorization_code_lifetime: Option<i64>,
    access_token_lifetime: Option<i64>,
    id_token_lifetime: Option<i64>,
    refresh_token_lifetime: Option<i64>,
    created_at: i64,
    updated_at: i64,
    always_issue_refresh_token: bool,
    resource_server: bool,
    allowed_origins: String,
    previous_secret_hash: Option<String>,
    previous_secret_expires_at: Option<i64>,
}

fn json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Serialising plain strings, vectors and JSON values cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

impl TryFrom<ClientRow> for Client {
    type Error = StoreError;
    fn try_from(r: ClientRow) -> Result<Self, StoreError> {
        let grant_types: Vec<String> = json("grant_types", &r.grant_types)?;
        Ok(Client {
            grant_types: grant_types
                .iter()
                .map(|g| g.parse::<GrantType>().map_err(|e| StoreError::Corrupt(e.to_string())))
                .collect::<Result<_, _>>()?,
            client_type: if r.is_public { ClientType::Public } else { ClientType::Confidential },
            redirect_uris: json("redirect_uris", &r.redirect_uris)?,
            allowed_origins: json("allowed_origins", &r.allowed_origins)?,
            post_logout_redirect_uris: json("post_logout_redirect_uris", &r.post_logout_redirect_uris)?,
            scopes: json("scopes", &r.scopes)?,
            contacts: json("contacts", &r.contacts)?,
            metadata: json("metadata", &r.metadata)?,
            id_token_signed_response_alg: r
                .id_token_signed_response_alg
                .parse()
                .map_err(|e: khoa_core::jose::KeyError| StoreError::Corrupt(e.to_string()))?,
            lifetimes: ClientLifetimes {
                authorization_code: r.authorization_code_lifetime,
                access_token: r.access_token_lifetime,
                id_token: r.id_token_lifetime,
                refresh_token: r.refresh_token_lifetime,
            },
            client_id: r.client_id,
            client_secret_hash: r.client_secret_hash,
            previous_secret_hash: r.previous_secret_hash,
            previous_secret_expires_at: r.previous_secret_expires_at,
            frontchannel_logout_uri: r.frontchannel_logout_uri,
            backchannel_logout_uri: r.backchannel_logout_uri,
            skip_consent: r.skip_consent,
            always_issue_refresh_token: r.always_issue_refresh_token,
            resource_server: r.resource_server,
            client_name: r.client_name,
            logo_uri: r.logo_uri,
            client_uri: r.client_uri,
            policy_uri: r.policy_uri,
            tos_uri: r.tos_uri,
            owner: r.owner,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: i64,
    username: String,
    password_hash: String,
    email: Option<String>,
    email_verified: bool,
    name: Option<String>,
    phone_number: Option<String>,
    phone_number_verified: bool,
    picture: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: r.id,
            username: r.username,
            password_hash: r.password_hash,
            email: r.email,
            email_verified: r.email_verified,
            name: r.name,
            phone_number: r.phone_number,
            phone_number_verified: r.phone_number_verified,
            picture: r.picture,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    kid: String,
    alg: String,
    generation: i64,
    public_jwk: String,
    private_key_sealed: Vec<u8>,
    created_at: i64,
    activates_at: i64,
}

impl TryFrom<KeyRow> for StoredKey {
    type Error = StoreError;
    fn try_from(r: KeyRow) -> Result<Self, StoreError> {
        Ok(StoredKey {
            timeline: KeyTimeline {
                alg: r.alg.parse().map_err(|e: khoa_core::jose::KeyError| StoreError::Corrupt(e.to_string()))?,
                kid: r.kid,
                generation: r.generation,
                created_at: r.created_at,
                activates_at: r.activates_at,
            },
            public_jwk: r.public_jwk,
            private_key_sealed: r.private_key_sealed,
        })
    }
}

pub(crate) const SESSION_COLUMNS: &str = "id_hash, sid, user_id, auth_time, amr, created_at, expires_at, ended_at";
pub(crate) const INTERACTION_COLUMNS: &str = "id_hash, csrf_token, request, sid, created_at, expires_at";
pub(crate) const CODE_COLUMNS: &str =
    "code_hash, client_id, user_id, sid, redirect_uri, redirect_uri_sent, scope, nonce, \
    code_challenge, auth_time, amr, created_at, expires_at";
pub(crate) const ACCESS_TOKEN_COLUMNS: &str =
    "jti, grant_id, client_id, user_id, sid, scope, issued_at, expires_at, revoked_at";

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    id_hash: String,
    sid: String,
    user_id: i64,
    auth_time: i64,
    amr: String,
    created_at: i64,
    expires_at: i64,
    ended_at: Option<i64>,
}

impl TryFrom<SessionRow> for khoa_core::session::Session {
    type Error = StoreError;
    fn try_from(r: SessionRow) -> Result<Self, StoreError> {
        Ok(Self {
            amr: json("amr", &r.amr)?,
            id_hash: r.id_hash,
            sid: r.sid,
            user_id: r.user_id,
            auth_time: r.auth_time,
            created_at: r.created_at,
            expires_at: r.expires_at,
            ended_at: r.ended_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct InteractionRow {
    id_hash: String,
    csrf_token: String,
    request: String,
    sid: Option<String>,
    created_at: i64,
    expires_at: i64,
}

impl From<InteractionRow> for khoa_core::session::Interaction {
    fn from(r: InteractionRow) -> Self {
        Self {
            id_hash: r.id_hash,
            csrf_token: r.csrf_token,
            request: r.request,
            sid: r.sid,
            created_at: r.created_at,
            expires_at: r.expires_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CodeRow {
    code_hash: String,
    client_id: String,
    user_id: i64,
    sid: String,
    redirect_uri: String,
    redirect_uri_sent: bool,
    scope: String,
    nonce: Option<String>,
    code_challenge: Option<String>,
    auth_time: i64,
    amr: String,
    created_at: i64,
    expires_at: i64,
}

impl TryFrom<CodeRow> for khoa_core::code::AuthorizationCode {
    type Error = StoreError;
    fn try_from(r: CodeRow) -> Result<Self, StoreError> {
        Ok(Self {
            amr: json("amr", &r.amr)?,
            code_hash: r.code_hash,
            client_id: r.client_id,
            user_id: r.user_id,
            sid: r.sid,
            redirect_uri: r.redirect_uri,
            redirect_uri_sent: r.redirect_uri_sent,
            scope: r.scope,
            nonce: r.nonce,
            code_challenge: r.code_challenge,
            auth_time: r.auth_time,
            created_at: r.created_at,
            expires_at: r.expires_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AccessTokenRow {
    jti: String,
    grant_id: String,
    client_id: String,
    user_id: Option<i64>,
    sid: Option<String>,
    scope: String,
    issued_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
}

impl From<AccessTokenRow> for crate::AccessTokenRecord {
    fn from(r: AccessTokenRow) -> Self {
        Self {
            jti: r.jti,
            grant_id: r.grant_id,
            client_id: r.client_id,
            user_id: r.user_id,
            sid: r.sid,
            scope: r.scope,
            issued_at: r.issued_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        }
    }
}

pub(crate) const REFRESH_COLUMNS: &str = "token_hash, family_id, client_id, user_id, sid, scope, auth_time, amr, \
    offline, issued_at, expires_at, rotated_at, successor_hash, successor_sealed, revoked_at";

#[derive(sqlx::FromRow)]
pub(crate) struct RefreshRow {
    token_hash: String,
    family_id: String,
    client_id: String,
    user_id: i64,
    sid: Option<String>,
    scope: String,
    auth_time: i64,
    amr: String,
    offline: bool,
    issued_at: i64,
    expires_at: i64,
    rotated_at: Option<i64>,
    successor_hash: Option<String>,
    successor_sealed: Option<Vec<u8>>,
    revoked_at: Option<i64>,
}

impl TryFrom<RefreshRow> for crate::RefreshTokenRecord {
    type Error = StoreError;
    fn try_from(r: RefreshRow) -> Result<Self, StoreError> {
        Ok(Self {
            amr: json("amr", &r.amr)?,
            token_hash: r.token_hash,
            family_id: r.family_id,
            client_id: r.client_id,
            user_id: r.user_id,
            sid: r.sid,
            scope: r.scope,
            auth_time: r.auth_time,
            offline: r.offline,
            issued_at: r.issued_at,
            expires_at: r.expires_at,
            rotated_at: r.rotated_at,
            successor_hash: r.successor_hash,
            successor_sealed: r.successor_sealed,
            revoked_at: r.revoked_at,
        })
    }
}

/// Inserts a refresh token (inside the caller's transaction).
macro_rules! insert_refresh {
    ($tx:expr, $r:expr) => {
        $crate::sql::query(&format!(
            "INSERT INTO refresh_tokens ({}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,NULL,NULL,NULL,NULL)",
            $crate::sql::REFRESH_COLUMNS
        ))
        .bind(&$r.token_hash)
        .bind(&$r.family_id)
        .bind(&$r.client_id)
        .bind($r.user_id)
        .bind(&$r.sid)
        .bind(&$r.scope)
        .bind($r.auth_time)
        .bind($crate::sql::to_json(&$r.amr))
        .bind($r.offline)
        .bind($r.issued_at)
        .bind($r.expires_at)
        .execute(&mut *$tx)
        .await?
    };
}

pub(crate) use insert_refresh;

/// Inserts an access token record (inside the caller's transaction): from its fields,
/// or from an [`AccessTokenRecord`](crate::AccessTokenRecord) with `record =`.
macro_rules! insert_access {
    ($tx:expr, record = $t:expr) => {
        $crate::sql::insert_access!(
            $tx,
            &$t.jti,
            &$t.grant_id,
            &$t.client_id,
            $t.user_id,
            &$t.sid,
            &$t.scope,
            $t.issued_at,
            $t.expires_at
        )
    };
    ($tx:expr, $jti:expr, $grant:expr, $client:expr, $user:expr, $sid:expr, $scope:expr, $iat:expr, $exp:expr) => {
        $crate::sql::query(&format!(
            "INSERT INTO access_tokens ({}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,NULL)",
            $crate::sql::ACCESS_TOKEN_COLUMNS
        ))
        .bind($jti)
        .bind($grant)
        .bind($client)
        .bind($user)
        .bind($sid)
        .bind($scope)
        .bind($iat)
        .bind($exp)
        .execute(&mut *$tx)
        .await?
    };
}

pub(crate) use insert_access;

/// Revokes a family's refresh and access tokens (inside the caller's transaction).
macro_rules! revoke_family_tx {
    ($tx:expr, $family:expr, $now:expr) => {{
        let refresh =
            $crate::sql::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL")
                .bind($now)
                .bind($family)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
        let access =
            $crate::sql::query("UPDATE access_tokens SET revoked_at = $1 WHERE grant_id = $2 AND revoked_at IS NULL")
                .bind($now)
                .bind($family)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
        refresh + access
    }};
}

pub(crate) use revoke_family_tx;

/// `$1,$2,…` for each column of a comma-separated list.
pub(crate) fn placeholders(columns: &str) -> String {
    (1..=columns.split(',').count()).map(|i| format!("${i}")).collect::<Vec<_>>().join(",")
}

/// Binds every column of [`CLIENT_COLUMNS`] of client `$c` to `$q`, in order.
macro_rules! bind_client {
    ($q:expr, $c:expr) => {{
        let c = $c;
        let grant_types: Vec<&str> = c.grant_types.iter().map(|g| g.as_str()).collect();
        $q.bind(&c.client_id)
            .bind(&c.client_secret_hash)
            .bind(c.is_public())
            .bind($crate::sql::to_json(&c.redirect_uris))
            .bind($crate::sql::to_json(&c.post_logout_redirect_uris))
            .bind(&c.frontchannel_logout_uri)
            .bind(&c.backchannel_logout_uri)
            .bind($crate::sql::to_json(&grant_types))
            .bind($crate::sql::to_json(&c.scopes))
            .bind(c.skip_consent)
            .bind(&c.client_name)
            .bind(&c.logo_uri)
            .bind(&c.client_uri)
            .bind(&c.policy_uri)
            .bind(&c.tos_uri)
            .bind(&c.owner)
            .bind($crate::sql::to_json(&c.contacts))
            .bind($crate::sql::to_json(&c.metadata))
            .bind(c.id_token_signed_response_alg.as_str())
            .bind(c.lifetimes.authorization_code)
            .bind(c.lifetimes.access_token)
            .bind(c.lifetimes.id_token)
            .bind(c.lifetimes.refresh_token)
            .bind(c.created_at)
            .bind(c.updated_at)
            .bind(c.always_issue_refresh_token)
            .bind(c.resource_server)
            .bind($crate::sql::to_json(&c.allowed_origins))
            .bind(&c.previous_secret_hash)
            .bind(c.previous_secret_expires_at)
    }};
}

pub(crate) use bind_client;

pub(crate) fn partner(
    (code, client_id, key_sealed, created_at, require_nonce): (String, String, Vec<u8>, i64, bool),
) -> crate::Partner {
    crate::Partner { code, client_id, key_sealed, require_nonce, created_at }
}

/// Queues a back-channel notification (inside the caller's transaction): pending, its
/// first attempt at `$now`, kept until `$keep_until`.
macro_rules! insert_delivery {
    ($tx:expr, $d:expr, $now:expr, $keep_until:expr) => {
        $crate::sql::query(&format!(
            "INSERT INTO logout_deliveries ({}, claimed_until, expires_at) \
             VALUES ($1,$2,$3,$4,$5,'pending',0,$6,$6,NULL,NULL,NULL,0,$7)",
            $crate::sql::DELIVERY_COLUMNS
        ))
        .bind(&$d.id)
        .bind(&$d.client_id)
        .bind(&$d.uri)
        .bind(&$d.sub)
        .bind(&$d.sid)
        .bind($now)
        .bind($keep_until)
        .execute(&mut *$tx)
        .await?
    };
}

pub(crate) use insert_delivery;

pub(crate) const DELIVERY_COLUMNS: &str = "id, client_id, uri, sub, sid, status, attempts, created_at, \
    next_attempt_at, delivered_at, last_status, last_error";

#[derive(sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    id: String,
    client_id: String,
    uri: String,
    sub: String,
    sid: String,
    status: String,
    attempts: i64,
    created_at: i64,
    next_attempt_at: i64,
    delivered_at: Option<i64>,
    last_status: Option<i64>,
    last_error: Option<String>,
}

impl From<DeliveryRow> for crate::Delivery {
    fn from(r: DeliveryRow) -> Self {
        Self {
            id: r.id,
            client_id: r.client_id,
            uri: r.uri,
            sub: r.sub,
            sid: r.sid,
            status: r.status,
            attempts: r.attempts,
            created_at: r.created_at,
            next_attempt_at: r.next_attempt_at,
            delivered_at: r.delivered_at,
            last_status: r.last_status,
            last_error: r.last_error,
        }
    }
}

/// Inside a write job: runs one change statement and bumps the change epoch in the
/// same transaction; evaluates to the number of rows the statement affected.
/// With `conflict = "what"`, a unique violation becomes `StoreError::Conflict(what)`.
macro_rules! change {
    ($tx:expr, $query:expr) => {
        $crate::sql::change!($tx, $query, map_err = $crate::StoreError::Database)
    };
    ($tx:expr, $query:expr, conflict = $what:expr) => {
        $crate::sql::change!($tx, $query, map_err = $crate::StoreError::conflict_as($what))
    };
    ($tx:expr, $query:expr, map_err = $map:expr) => {{
        let affected = $query.execute(&mut *$tx).await.map_err($map)?.rows_affected();
        $crate::sql::query($crate::sql::BUMP_EPOCH).execute(&mut *$tx).await?;
        affected
    }};
}

pub(crate) use change;

/// Implements [`Store`](crate::Store) for a backend struct with a `pool` field, a
/// `BACKEND` constant and a `run_migrations` method.
macro_rules! sql_store {
    ($store:ident) => {
        #[async_trait::async_trait]
        impl $crate::Store for $store {
            fn backend(&self) -> $crate::Backend {
                Self::BACKEND
            }

            async fn migrate(&self) -> Result<(), $crate::StoreError> {
                // Two processes racing on a fresh SQLite file: the loser sees the
                // winner's work on its second attempt.
                match self.run_migrations().await {
                    Ok(()) => Ok(()),
                    Err(_) => self.run_migrations().await,
                }
            }

            async fn ping(&self) -> Result<(), $crate::StoreError> {
                $crate::sql::query("SELECT 1").execute(&mut *self.read().await?).await?;
                Ok(())
            }

            async fn change_epoch(&self) -> Result<i64, $crate::StoreError> {
                Ok($crate::sql::query_scalar("SELECT epoch FROM change_epoch WHERE id = 1").fetch_one(&mut *self.read().await?).await?)
            }

            async fn insert_client(&self, c: &khoa_core::client::Client) -> Result<(), $crate::StoreError> {
                self.write(c.clone(), |tx, c| {
                    Box::pin(async move {
                        let sql = format!(
                            "INSERT INTO clients ({}) VALUES ({})",
                            $crate::sql::CLIENT_COLUMNS,
                            $crate::sql::placeholders($crate::sql::CLIENT_COLUMNS)
                        );
                        $crate::sql::change!(tx, $crate::sql::bind_client!($crate::sql::query(&sql), c), conflict = "client");
                        Ok(())
                    })
                })
                .await
            }

            async fn update_client(&self, c: &khoa_core::client::Client) -> Result<bool, $crate::StoreError> {
                self.write(c.clone(), |tx, c| {
                    Box::pin(async move {
                        // Every column is replaced; $1 (client_id) stays the key.
                        let set: Vec<String> = $crate::sql::CLIENT_COLUMNS
                            .split(',')
                            .map(str::trim)
                            .enumerate()
                            .skip(1)
                            .map(|(i, column)| format!("{column} = ${}", i + 1))
                            .collect();
                        let sql = format!("UPDATE clients SET {} WHERE client_id = $1", set.join(", "));
                        let n = $crate::sql::change!(tx, $crate::sql::bind_client!($crate::sql::query(&sql), c));
                        Ok(n > 0)
                    })
                })
                .await
            }

            async fn client(&self, client_id: &str) -> Result<Option<khoa_core::client::Client>, $crate::StoreError> {
                let row: Option<$crate::sql::ClientRow> = $crate::sql::query_as(&format!(
                    "SELECT {} FROM clients WHERE client_id = $1",
                    $crate::sql::CLIENT_COLUMNS
                ))
                .bind(client_id)
                .fetch_optional(&mut *self.read().await?)
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn clients(&self) -> Result<Vec<khoa_core::client::Client>, $crate::StoreError> {
                let rows: Vec<$crate::sql::ClientRow> =
                    $crate::sql::query_as(&format!("SELECT {} FROM clients ORDER BY client_id", $crate::sql::CLIENT_COLUMNS))
                        .fetch_all(&mut *self.read().await?)
                        .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn delete_client(&self, client_id: &str) -> Result<bool, $crate::StoreError> {
                self.write(client_id.to_string(), |tx, client_id| {
                    Box::pin(async move {
                        let n = $crate::sql::change!(
                            tx,
                            $crate::sql::query("DELETE FROM clients WHERE client_id = $1").bind(client_id)
                        );
                        Ok(n > 0)
                    })
                })
                .await
            }

            async fn longest_client_token_lifetime(&self) -> Result<Option<i64>, $crate::StoreError> {
                let (a, i): (Option<i64>, Option<i64>) =
                    $crate::sql::query_as("SELECT MAX(access_token_lifetime), MAX(id_token_lifetime) FROM clients")
                        .fetch_one(&mut *self.read().await?)
                        .await?;
                Ok(a.max(i))
            }

            async fn insert_user(
                &self,
                u: &khoa_core::user::NewUser,
            ) -> Result<khoa_core::user::User, $crate::StoreError> {
                self.write(u.clone(), |tx, u| {
                    Box::pin(async move {
                        let row: $crate::sql::UserRow = $crate::sql::query_as(&format!(
                            "INSERT INTO users (username, password_hash, email, email_verified, name, phone_number, \
                             phone_number_verified, picture, created_at, updated_at) \
                             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$9) RETURNING {}",
                            $crate::sql::USER_COLUMNS
                        ))
                        .bind(&u.username)
                        .bind(&u.password_hash)
                        .bind(&u.email)
                        .bind(u.email_verified)
                        .bind(&u.name)
                        .bind(&u.phone_number)
                        .bind(u.phone_number_verified)
                        .bind(&u.picture)
                        .bind(u.created_at)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err($crate::StoreError::conflict_as("username"))?;
                        $crate::sql::query($crate::sql::BUMP_EPOCH).execute(&mut *tx).await?;
                        Ok(row.into())
                    })
                })
                .await
            }

            async fn user_by_username(
                &self,
                username: &str,
            ) -> Result<Option<khoa_core::user::User>, $crate::StoreError> {
                let row: Option<$crate::sql::UserRow> =
                    $crate::sql::query_as(&format!("SELECT {} FROM users WHERE username = $1", $crate::sql::USER_COLUMNS))
                        .bind(username)
                        .fetch_optional(&mut *self.read().await?)
                        .await?;
                Ok(row.map(Into::into))
            }

            async fn user_by_id(&self, id: i64) -> Result<Option<khoa_core::user::User>, $crate::StoreError> {
                let row: Option<$crate::sql::UserRow> =
                    $crate::sql::query_as(&format!("SELECT {} FROM users WHERE id = $1", $crate::sql::USER_COLUMNS))
                        .bind(id)
                        .fetch_optional(&mut *self.read().await?)
                        .await?;
                Ok(row.map(Into::into))
            }

            async fn users(&self) -> Result<Vec<khoa_core::user::User>, $crate::StoreError> {
                let rows: Vec<$crate::sql::UserRow> =
                    $crate::sql::query_as(&format!("SELECT {} FROM users ORDER BY id", $crate::sql::USER_COLUMNS))
                        .fetch_all(&mut *self.read().await?)
                        .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn delete_user(&self, username: &str) -> Result<bool, $crate::StoreError> {
                self.write(username.to_string(), |tx, username| {
                    Box::pin(async move {
                        let n = $crate::sql::change!(
                            tx,
                            $crate::sql::query("DELETE FROM users WHERE username = $1").bind(username)
                        );
                        Ok(n > 0)
                    })
                })
                .await
            }

            async fn set_password_hash(
                &self,
                username: &str,
                hash: &str,
                now: i64,
            ) -> Result<bool, $crate::StoreError> {
                self.write((username.to_string(), hash.to_string(), now), |tx, (username, hash, now)| {
                    Box::pin(async move {
                        let n = $crate::sql::change!(
                            tx,
                            $crate::sql::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE username = $3")
                                .bind(hash)
                                .bind(now)
                                .bind(username)
                        );
                        Ok(n > 0)
                    })
                })
                .await
            }

            async fn insert_signing_key(&self, k: &$crate::StoredKey) -> Result<(), $crate::StoreError> {
                self.write(k.clone(), |tx, k| {
                    Box::pin(async move {
                        $crate::sql::change!(
                            tx,
                            $crate::sql::query(&format!(
                                "INSERT INTO signing_keys ({}) VALUES ($1,$2,$3,$4,$5,$6,$7)",
                                $crate::sql::KEY_COLUMNS
                            ))
                            .bind(&k.timeline.kid)
                            .bind(k.timeline.alg.as_str())
                            .bind(k.timeline.generation)
                            .bind(&k.public_jwk)
                            .bind(&k.private_key_sealed)
                            .bind(k.timeline.created_at)
                            .bind(k.timeline.activates_at),
                            conflict = "signing key generation"
                        );
                        Ok(())
                    })
                })
                .await
            }

            async fn signing_keys(&self) -> Result<Vec<$crate::StoredKey>, $crate::StoreError> {
                let rows: Vec<$crate::sql::KeyRow> = $crate::sql::query_as(&format!(
                    "SELECT {} FROM signing_keys ORDER BY alg, generation",
                    $crate::sql::KEY_COLUMNS
                ))
                .fetch_all(&mut *self.read().await?)
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn insert_interaction(&self, i: &khoa_core::session::Interaction) -> Result<(), $crate::StoreError> {
                self.write(i.clone(), |tx, i| {
                    Box::pin(async move {
                        $crate::sql::query(&format!(
                            "INSERT INTO interactions ({}) VALUES ($1,$2,$3,$4,$5,$6)",
                            $crate::sql::INTERACTION_COLUMNS
                        ))
                        .bind(&i.id_hash)
                        .bind(&i.csrf_token)
                        .bind(&i.request)
                        .bind(&i.sid)
                        .bind(i.created_at)
                        .bind(i.expires_at)
                        .execute(&mut *tx)
                        .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn interaction(
                &self,
                id_hash: &str,
                now: i64,
            ) -> Result<Option<khoa_core::session::Interaction>, $crate::StoreError> {
                let row: Option<$crate::sql::InteractionRow> = $crate::sql::query_as(&format!(
                    "SELECT {} FROM interactions WHERE id_hash = $1 AND expires_at > $2",
                    $crate::sql::INTERACTION_COLUMNS
                ))
                .bind(id_hash)
                .bind(now)
                .fetch_optional(&mut *self.read().await?)
                .await?;
                Ok(row.map(Into::into))
            }

            async fn set_interaction_session(&self, id_hash: &str, sid: &str) -> Result<bool, $crate::StoreError> {
                self.write((id_hash.to_string(), sid.to_string()), |tx, (id_hash, sid)| {
                    Box::pin(async move {
                        let n = $crate::sql::query("UPDATE interactions SET sid = $1 WHERE id_hash = $2")
                            .bind(sid)
                            .bind(id_hash)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                        Ok(n > 0)
                    })
                })
                .await
            }

            async fn delete_interaction(&self, id_hash: &str) -> Result<bool, $crate::StoreError> {
                self.write(id_hash.to_string(), |tx, id_hash| {
                    Box::pin(async move {
                        let n = $crate::sql::query("DELETE FROM interactions WHERE id_hash = $1")
                            .bind(id_hash)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                        Ok(n > 0)
                    })
                })
                .await
            }

            async fn insert_session(&self, s: &khoa_core::session::Session) -> Result<(), $crate::StoreError> {
                self.write(s.clone(), |tx, s| {
                    Box::pin(async move {
                        $crate::sql::query(&format!(
                            "INSERT INTO sessions ({}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
                            $crate::sql::SESSION_COLUMNS
                        ))
                        .bind(&s.id_hash)
                        .bind(&s.sid)
                        .bind(s.user_id)
                        .bind(s.auth_time)
                        .bind($crate::sql::to_json(&s.amr))
                        .bind(s.created_at)
                        .bind(s.expires_at)
                        .bind(s.ended_at)
                        .execute(&mut *tx)
                        .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn session(&self, id_hash: &str) -> Result<Option<khoa_core::session::Session>, $crate::StoreError> {
                let row: Option<$crate::sql::SessionRow> = $crate::sql::query_as(&format!(
                    "SELECT {} FROM sessions WHERE id_hash = $1",
                    $crate::sql::SESSION_COLUMNS
                ))
                .bind(id_hash)
                .fetch_optional(&mut *self.read().await?)
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn session_by_sid(&self, sid: &str) -> Result<Option<khoa_core::session::Session>, $crate::StoreError> {
                let row: Option<$crate::sql::SessionRow> =
                    $crate::sql::query_as(&format!("SELECT {} FROM sessions WHERE sid = $1", $crate::sql::SESSION_COLUMNS))
                        .bind(sid)
                        .fetch_optional(&mut *self.read().await?)
                        .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn end_session(&self, sid: &str, now: i64) -> Result<bool, $crate::StoreError> {
                self.write((sid.to_string(), now), |tx, (sid, now)| {
                    Box::pin(async move {
                        let n = $crate::sql::query("UPDATE sessions SET ended_at = $1 WHERE sid = $2 AND ended_at IS NULL")
                            .bind(now)
                            .bind(sid)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                        Ok(n > 0)
                    })
                })
                .await
            }

            async fn logout_session(
                &self,
                sid: &str,
                now: i64,
                deliveries: &[$crate::NewDelivery],
                keep_until: i64,
            ) -> Result<bool, $crate::StoreError> {
                let args = (sid.to_string(), now, deliveries.to_vec(), keep_until);
                self.write(args, |tx, (sid, now, deliveries, keep_until)| {
                    Box::pin(async move {
                        let ended = $crate::sql::query("UPDATE sessions SET ended_at = $1 WHERE sid = $2 AND ended_at IS NULL")
                            .bind(now)
                            .bind(sid)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                        if ended == 0 {
                            return Ok(false);
                        }
                        $crate::sql::query("UPDATE access_tokens SET revoked_at = $1 WHERE sid = $2 AND revoked_at IS NULL")
                            .bind(now)
                            .bind(sid)
                            .execute(&mut *tx)
                            .await?;
                        // OIDC Core §11: refresh tokens granted offline_access outlive the session.
                        $crate::sql::query(
                            "UPDATE refresh_tokens SET revoked_at = $1 WHERE sid = $2 AND offline = FALSE AND revoked_at IS NULL",
                        )
                        .bind(now)
                        .bind(sid)
                        .execute(&mut *tx)
                        .await?;
                        for d in deliveries {
                            $crate::sql::insert_delivery!(tx, d, now, keep_until);
                        }
                        Ok(true)
                    })
                })
                .await
            }

            async fn claim_deliveries(
                &self,
                holder: &str,
                now: i64,
                claim_until: i64,
                limit: i64,
            ) -> Result<Vec<$crate::Delivery>, $crate::StoreError> {
                // The outer conditions are re-checked on the row actually updated, so two
                // workers never claim one notification; PostgreSQL also skips rows
                // another worker is claiming instead of waiting for them.
                let skip_locked = if Self::BACKEND == $crate::Backend::Postgres { "FOR UPDATE SKIP LOCKED" } else { "" };
                let sql = format!(
                    "UPDATE logout_deliveries SET claimed_by = $1, claimed_until = $2 \
                     WHERE id IN (SELECT id FROM logout_deliveries WHERE status = 'pending' AND next_attempt_at <= $3 \
                                  AND claimed_until < $3 ORDER BY next_attempt_at LIMIT $4 {skip_locked}) \
                     AND status = 'pending' AND claimed_until < $3 RETURNING {}",
                    $crate::sql::DELIVERY_COLUMNS
                );
                let args = (sql, holder.to_string(), claim_until, now, limit);
                self.write(args, |tx, (sql, holder, claim_until, now, limit)| {
                    Box::pin(async move {
                        let rows: Vec<$crate::sql::DeliveryRow> = $crate::sql::query_as(sql)
                            .bind(holder)
                            .bind(claim_until)
                            .bind(now)
                            .bind(limit)
                            .fetch_all(&mut *tx)
                            .await?;
                        Ok(rows.into_iter().map(Into::into).collect())
                    })
                })
                .await
            }

            async fn record_attempt(
                &self,
                id: &str,
                holder: &str,
                now: i64,
                result: &$crate::AttemptRecord,
            ) -> Result<bool, $crate::StoreError> {
                let (status, next, delivered_at, last_status, last_error) = match result {
                    $crate::AttemptRecord::Delivered { status } => ("delivered", now, Some(now), Some(*status), None),
                    $crate::AttemptRecord::Retry { next_attempt_at, status, error } => {
                        ("pending", *next_attempt_at, None, *status, Some(error.clone()))
                    }
                    $crate::AttemptRecord::Failed { status, error } => ("failed", now, None, *status, Some(error.clone())),
                };
                let args = (status, next, delivered_at, last_status, last_error, id.to_string(), holder.to_string());
                self.write(args, |tx, (status, next, delivered_at, last_status, last_error, id, holder)| {
                    Box::pin(async move {
                        let n = $crate::sql::query(
                            "UPDATE logout_deliveries SET status = $1, attempts = attempts + 1, next_attempt_at = $2, \
                             delivered_at = $3, last_status = $4, last_error = $5, claimed_by = NULL, claimed_until = 0 \
                             WHERE id = $6 AND claimed_by = $7",
                        )
                        .bind(status)
                        .bind(next)
                        .bind(delivered_at)
                        .bind(last_status)
                        .bind(last_error)
                        .bind(id)
                        .bind(holder)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        Ok(n > 0)
                    })
                })
                .await
            }

            async fn deliveries(&self, limit: i64) -> Result<Vec<$crate::Delivery>, $crate::StoreError> {
                let rows: Vec<$crate::sql::DeliveryRow> = $crate::sql::query_as(&format!(
                    "SELECT {} FROM logout_deliveries ORDER BY created_at DESC, id LIMIT $1",
                    $crate::sql::DELIVERY_COLUMNS
                ))
                .bind(limit)
                .fetch_all(&mut *self.read().await?)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn delivery_counts(&self) -> Result<Vec<(String, i64)>, $crate::StoreError> {
                Ok($crate::sql::query_as("SELECT status, COUNT(*) FROM logout_deliveries GROUP BY status ORDER BY status")
                    .fetch_all(&mut *self.read().await?)
                    .await?)
            }

            async fn session_clients(&self, sid: &str) -> Result<Vec<String>, $crate::StoreError> {
                Ok($crate::sql::query_scalar("SELECT client_id FROM session_clients WHERE sid = $1 ORDER BY first_at, client_id")
                    .bind(sid)
                    .fetch_all(&mut *self.read().await?)
                    .await?)
            }

            async fn consent(&self, user_id: i64, client_id: &str) -> Result<Option<String>, $crate::StoreError> {
                Ok($crate::sql::query_scalar("SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2")
                    .bind(user_id)
                    .bind(client_id)
                    .fetch_optional(&mut *self.read().await?)
                    .await?)
            }

            async fn grant_consent(&self, user_id: i64, client_id: &str, scope: &str, now: i64) -> Result<(), $crate::StoreError> {
                let args = (user_id, client_id.to_string(), scope.to_string(), now);
                self.write(args, |tx, (user_id, client_id, scope, now)| {
                    Box::pin(async move {
                        $crate::sql::query(
                            "INSERT INTO consents (user_id, client_id, scope, granted_at) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (user_id, client_id) DO UPDATE SET scope = excluded.scope, granted_at = excluded.granted_at",
                        )
                        .bind(user_id)
                        .bind(client_id)
                        .bind(scope)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn insert_code(&self, c: &khoa_core::code::AuthorizationCode) -> Result<(), $crate::StoreError> {
                self.write(c.clone(), |tx, c| {
                    Box::pin(async move {
                        $crate::sql::query(&format!(
                            "INSERT INTO authorization_codes ({}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
                            $crate::sql::CODE_COLUMNS
                        ))
                        .bind(&c.code_hash)
                        .bind(&c.client_id)
                        .bind(c.user_id)
                        .bind(&c.sid)
                        .bind(&c.redirect_uri)
                        .bind(c.redirect_uri_sent)
                        .bind(&c.scope)
                        .bind(&c.nonce)
                        .bind(&c.code_challenge)
                        .bind(c.auth_time)
                        .bind($crate::sql::to_json(&c.amr))
                        .bind(c.created_at)
                        .bind(c.expires_at)
                        .execute(&mut *tx)
                        .await?;
                        $crate::sql::query(
                            "INSERT INTO session_clients (sid, client_id, first_at) VALUES ($1, $2, $3) \
                             ON CONFLICT (sid, client_id) DO NOTHING",
                        )
                        .bind(&c.sid)
                        .bind(&c.client_id)
                        .bind(c.created_at)
                        .execute(&mut *tx)
                        .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn redeem_code(
                &self,
                code_hash: &str,
                client_id: &str,
                now: i64,
                token: &$crate::NewAccessToken,
                refresh: $crate::RefreshFor,
            ) -> Result<$crate::Redemption, $crate::StoreError> {
                let args = (code_hash.to_string(), client_id.to_string(), now, token.clone(), refresh);
                self.write(args, |tx, (code_hash, client_id, now, token, refresh)| {
                    Box::pin(async move {
                        // RFC 6749 §4.1.2: a code is used at most once. The row lock (PostgreSQL)
                        // or the write lock (SQLite) makes exactly one concurrent caller win.
                        // A code outlives no logout: its session must not have ended.
                        let consumed: Option<$crate::sql::CodeRow> = $crate::sql::query_as(&format!(
                            "UPDATE authorization_codes SET consumed_at = $1 \
                             WHERE code_hash = $2 AND client_id = $3 AND consumed_at IS NULL \
                             AND EXISTS (SELECT 1 FROM sessions s WHERE s.sid = authorization_codes.sid AND s.ended_at IS NULL) \
                             RETURNING {}",
                            $crate::sql::CODE_COLUMNS
                        ))
                        .bind(now)
                        .bind(code_hash)
                        .bind(client_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                        if let Some(row) = consumed {
                            let code: khoa_core::code::AuthorizationCode = row.try_into()?;
                            $crate::sql::insert_access!(
                                tx,
                                &token.jti,
                                &code.code_hash,
                                &code.client_id,
                                code.user_id,
                                &code.sid,
                                &code.scope,
                                token.issued_at,
                                token.expires_at
                            );
                            if let Some(r) = refresh(&code) {
                                $crate::sql::insert_refresh!(tx, r);
                            }
                            return Ok($crate::Redemption::Redeemed(Box::new(code)));
                        }
                        let state: Option<(Option<i64>, String)> = $crate::sql::query_as(
                            "SELECT consumed_at, client_id FROM authorization_codes WHERE code_hash = $1",
                        )
                        .bind(code_hash)
                        .fetch_optional(&mut *tx)
                        .await?;
                        Ok(match state {
                            None => $crate::Redemption::Unknown,
                            Some((None, owner)) if owner != *client_id => $crate::Redemption::OtherClient,
                            Some((None, _)) => $crate::Redemption::SessionEnded,
                            Some((Some(_), _)) => {
                                let revoked = $crate::sql::revoke_family_tx!(tx, code_hash, now);
                                $crate::Redemption::Replayed { revoked }
                            }
                        })
                    })
                })
                .await
            }

            async fn access_token(&self, jti: &str) -> Result<Option<$crate::AccessTokenRecord>, $crate::StoreError> {
                let row: Option<$crate::sql::AccessTokenRow> = $crate::sql::query_as(&format!(
                    "SELECT {} FROM access_tokens WHERE jti = $1",
                    $crate::sql::ACCESS_TOKEN_COLUMNS
                ))
                .bind(jti)
                .fetch_optional(&mut *self.read().await?)
                .await?;
                Ok(row.map(Into::into))
            }

            async fn revoke_grant(&self, grant_id: &str, now: i64) -> Result<u64, $crate::StoreError> {
                self.write((grant_id.to_string(), now), |tx, (grant_id, now)| {
                    Box::pin(async move {
                        Ok($crate::sql::query(
                            "UPDATE access_tokens SET revoked_at = $1 WHERE grant_id = $2 AND revoked_at IS NULL",
                        )
                        .bind(now)
                        .bind(grant_id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected())
                    })
                })
                .await
            }

            async fn record_login_failure(
                &self,
                key: &str,
                now: i64,
                policy: &khoa_core::throttle::ThrottlePolicy,
            ) -> Result<i64, $crate::StoreError> {
                let args = (key.to_string(), now, policy.clone());
                self.write(args, |tx, (key, now, policy)| {
                    Box::pin(async move {
                        let failures: i64 = $crate::sql::query_scalar(
                            "INSERT INTO login_throttle (key, failures, last_failure_at, blocked_until) VALUES ($1, 1, $2, $2) \
                             ON CONFLICT (key) DO UPDATE SET \
                               failures = CASE WHEN login_throttle.last_failure_at < $3 THEN 1 ELSE login_throttle.failures + 1 END, \
                               last_failure_at = $2 \
                             RETURNING failures",
                        )
                        .bind(key)
                        .bind(now)
                        .bind(now - policy.window)
                        .fetch_one(&mut *tx)
                        .await?;
                        let until = policy.blocked_until(failures, *now);
                        $crate::sql::query("UPDATE login_throttle SET blocked_until = $1 WHERE key = $2")
                            .bind(until)
                            .bind(key)
                            .execute(&mut *tx)
                            .await?;
                        Ok(until)
                    })
                })
                .await
            }

            async fn reserve_login_attempt(
                &self,
                keys: &[khoa_core::throttle::ThrottleKey],
                now: i64,
            ) -> Result<khoa_core::throttle::Reservation, $crate::StoreError> {
                self.write((keys.to_vec(), now), |tx, (keys, now)| {
                    Box::pin(async move {
                        use khoa_core::throttle::Reservation;
                        let now = *now;
                        // Undone as a whole when a later key refuses: counted under none.
                        $crate::sql::query("SAVEPOINT reserve_login").execute(&mut *tx).await?;
                        for k in keys {
                            // Counted only while not blocked: the row lock (PostgreSQL) or
                            // the write lock (SQLite) orders concurrent attempts, and each
                            // sees the blocked_until the one before it set.
                            let failures: Option<i64> = $crate::sql::query_scalar(
                                "INSERT INTO login_throttle (key, failures, last_failure_at, blocked_until) \
                                 VALUES ($1, 1, $2, $2) \
                                 ON CONFLICT (key) DO UPDATE SET \
                                   failures = CASE WHEN login_throttle.last_failure_at < $3 THEN 1 \
                                              ELSE login_throttle.failures + 1 END, \
                                   last_failure_at = $2 \
                                 WHERE login_throttle.blocked_until <= $2 \
                                 RETURNING failures",
                            )
                            .bind(&k.key)
                            .bind(now)
                            .bind(now - k.policy.window)
                            .fetch_optional(&mut *tx)
                            .await?;
                            let Some(failures) = failures else {
                                $crate::sql::query("ROLLBACK TO SAVEPOINT reserve_login").execute(&mut *tx).await?;
                                $crate::sql::query("RELEASE SAVEPOINT reserve_login").execute(&mut *tx).await?;
                                let until: i64 =
                                    $crate::sql::query_scalar("SELECT blocked_until FROM login_throttle WHERE key = $1")
                                        .bind(&k.key)
                                        .fetch_one(&mut *tx)
                                        .await?;
                                return Ok(Reservation::Blocked { until });
                            };
                            let until = k.policy.blocked_until(failures, now);
                            if until != now {
                                $crate::sql::query("UPDATE login_throttle SET blocked_until = $1 WHERE key = $2")
                                    .bind(until)
                                    .bind(&k.key)
                                    .execute(&mut *tx)
                                    .await?;
                            }
                        }
                        $crate::sql::query("RELEASE SAVEPOINT reserve_login").execute(&mut *tx).await?;
                        Ok(Reservation::Admitted)
                    })
                })
                .await
            }

            async fn settle_login_success(
                &self,
                keys: &[khoa_core::throttle::ThrottleKey],
                now: i64,
            ) -> Result<(), $crate::StoreError> {
                self.write((keys.to_vec(), now), |tx, (keys, now)| {
                    Box::pin(async move {
                        for k in keys {
                            match k.on_success {
                                khoa_core::throttle::OnSuccess::Forget => {
                                    $crate::sql::query("DELETE FROM login_throttle WHERE key = $1")
                                        .bind(&k.key)
                                        .execute(&mut *tx)
                                        .await?;
                                }
                                // This attempt was no failure after all; a block that only
                                // the reservation caused is lifted.
                                khoa_core::throttle::OnSuccess::Refund => {
                                    $crate::sql::query(
                                        "UPDATE login_throttle SET failures = failures - 1, \
                                         blocked_until = CASE WHEN failures - 1 < $1 THEN $2 ELSE blocked_until END \
                                         WHERE key = $3 AND failures > 0",
                                    )
                                    .bind(k.policy.free_failures)
                                    .bind(*now)
                                    .bind(&k.key)
                                    .execute(&mut *tx)
                                    .await?;
                                }
                            }
                        }
                        Ok(())
                    })
                })
                .await
            }

            async fn end_user_sessions(
                &self,
                username: &str,
                change: $crate::UserChange,
                now: i64,
                keep_until: i64,
            ) -> Result<Option<$crate::EndedSessions>, $crate::StoreError> {
                let args = (username.to_string(), change, now, keep_until);
                self.write(args, |tx, (username, change, now, keep_until)| {
                    Box::pin(async move {
                        let now = *now;
                        let user_id: Option<i64> = $crate::sql::query_scalar("SELECT id FROM users WHERE username = $1")
                            .bind(username)
                            .fetch_optional(&mut *tx)
                            .await?;
                        let Some(user_id) = user_id else { return Ok(None) };
                        // Back-channel notices for the clients of every session that ends.
                        let notices: Vec<(String, String, String)> = $crate::sql::query_as(
                            "SELECT s.sid, c.client_id, c.backchannel_logout_uri FROM sessions s \
                             JOIN session_clients sc ON sc.sid = s.sid JOIN clients c ON c.client_id = sc.client_id \
                             WHERE s.user_id = $1 AND s.ended_at IS NULL AND s.expires_at > $2 \
                             AND c.backchannel_logout_uri IS NOT NULL ORDER BY s.sid, c.client_id",
                        )
                        .bind(user_id)
                        .bind(now)
                        .fetch_all(&mut *tx)
                        .await?;
                        let sessions = $crate::sql::query(
                            "UPDATE sessions SET ended_at = $1 WHERE user_id = $2 AND ended_at IS NULL AND expires_at > $1",
                        )
                        .bind(now)
                        .bind(user_id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        let mut tokens = 0;
                        for table in ["access_tokens", "refresh_tokens"] {
                            let sql = format!(
                                "UPDATE {table} SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL"
                            );
                            tokens +=
                                $crate::sql::query(&sql).bind(now).bind(user_id).execute(&mut *tx).await?.rows_affected();
                        }
                        for (sid, client_id, uri) in notices.iter().cloned() {
                            let d = $crate::NewDelivery {
                                id: khoa_core::random::random_token::<16>(),
                                client_id,
                                uri,
                                sub: user_id.to_string(),
                                sid,
                            };
                            $crate::sql::insert_delivery!(tx, &d, now, *keep_until);
                        }
                        match change {
                            $crate::UserChange::None => {}
                            $crate::UserChange::Password { hash } => {
                                $crate::sql::change!(
                                    tx,
                                    $crate::sql::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
                                        .bind(hash)
                                        .bind(now)
                                        .bind(user_id)
                                );
                            }
                            $crate::UserChange::Delete => {
                                $crate::sql::change!(
                                    tx,
                                    $crate::sql::query("DELETE FROM users WHERE id = $1").bind(user_id)
                                );
                            }
                        }
                        Ok(Some($crate::EndedSessions {
                            user_id,
                            sessions,
                            tokens,
                            notifications: notices.len() as u64,
                        }))
                    })
                })
                .await
            }

            async fn clear_sealed_successors(&self, before: i64, limit: i64) -> Result<u64, $crate::StoreError> {
                self.write((before, limit), |tx, (before, limit)| {
                    Box::pin(async move {
                        Ok($crate::sql::query(
                            "UPDATE refresh_tokens SET successor_sealed = NULL WHERE token_hash IN \
                             (SELECT token_hash FROM refresh_tokens WHERE successor_sealed IS NOT NULL \
                              AND rotated_at < $1 LIMIT $2)",
                        )
                        .bind(*before)
                        .bind(*limit)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected())
                    })
                })
                .await
            }

            async fn use_partner_nonce(&self, partner: &str, nonce: &str, expires_at: i64) -> Result<bool, $crate::StoreError> {
                let key = format!("{partner}|{nonce}");
                self.write((key, expires_at), |tx, (key, expires_at)| {
                    Box::pin(async move {
                        let n = $crate::sql::query(
                            "INSERT INTO partner_nonces (key, expires_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                        )
                        .bind(key)
                        .bind(*expires_at)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        Ok(n == 1)
                    })
                })
                .await
            }

            async fn code_challenge_reused(&self, client_id: &str, challenge: &str, code_hash: &str) -> Result<bool, $crate::StoreError> {
                // COUNT(*) is BIGINT on both databases (a bare `1` is INT4 on PostgreSQL).
                let n: i64 = $crate::sql::query_scalar(
                    "SELECT COUNT(*) FROM authorization_codes WHERE client_id = $1 AND code_challenge = $2 \
                     AND code_hash <> $3 AND consumed_at IS NOT NULL",
                )
                .bind(client_id)
                .bind(challenge)
                .bind(code_hash)
                .fetch_one(&mut *self.read().await?)
                .await?;
                Ok(n > 0)
            }

            async fn code(&self, code_hash: &str) -> Result<Option<khoa_core::code::AuthorizationCode>, $crate::StoreError> {
                let row: Option<$crate::sql::CodeRow> = $crate::sql::query_as(&format!(
                    "SELECT {} FROM authorization_codes WHERE code_hash = $1",
                    $crate::sql::CODE_COLUMNS
                ))
                .bind(code_hash)
                .fetch_optional(&mut *self.read().await?)
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn refresh_token(&self, token_hash: &str) -> Result<Option<$crate::RefreshTokenRecord>, $crate::StoreError> {
                let row: Option<$crate::sql::RefreshRow> = $crate::sql::query_as(&format!(
                    "SELECT {} FROM refresh_tokens WHERE token_hash = $1",
                    $crate::sql::REFRESH_COLUMNS
                ))
                .bind(token_hash)
                .fetch_optional(&mut *self.read().await?)
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn rotate_refresh_token(
                &self,
                token_hash: &str,
                client_id: &str,
                now: i64,
                grace: i64,
                successor: $crate::RefreshSuccessor,
                access: &$crate::NewAccessToken,
            ) -> Result<$crate::Rotation, $crate::StoreError> {
                let args = (token_hash.to_string(), client_id.to_string(), now, grace, successor, access.clone());
                self.write(args, |tx, (token_hash, client_id, now, grace, successor, access)| {
                    Box::pin(async move {
                        let (now, grace) = (*now, *grace);
                        // Exactly one concurrent presentation matches `rotated_at IS NULL`: the
                        // row lock (PostgreSQL) or the write lock (SQLite) orders them. The
                        // winner reads the token it rotated from RETURNING.
                        let won: Option<$crate::sql::RefreshRow> = $crate::sql::query_as(&format!(
                            "UPDATE refresh_tokens SET rotated_at = $1, successor_hash = $2, successor_sealed = $3 \
                             WHERE token_hash = $4 AND client_id = $5 AND rotated_at IS NULL AND revoked_at IS NULL \
                             AND expires_at > $1 RETURNING {}",
                            $crate::sql::REFRESH_COLUMNS
                        ))
                        .bind(now)
                        .bind(&successor.token_hash)
                        .bind(&successor.sealed)
                        .bind(token_hash)
                        .bind(client_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                        if let Some(row) = won {
                            let presented: $crate::RefreshTokenRecord = row.try_into()?;
                            let Some(built) = (successor.row)(&presented) else {
                                // Refused: the rotation is undone within its own transaction.
                                $crate::sql::query(
                                    "UPDATE refresh_tokens SET rotated_at = NULL, successor_hash = NULL, \
                                     successor_sealed = NULL WHERE token_hash = $1",
                                )
                                .bind(token_hash)
                                .execute(&mut *tx)
                                .await?;
                                return Ok($crate::Rotation::Refused);
                            };
                            let next = $crate::NewRefreshToken {
                                token_hash: successor.token_hash.clone(),
                                sealed: successor.sealed.clone(),
                                ..built
                            };
                            $crate::sql::insert_refresh!(tx, &next);
                            $crate::sql::insert_access!(
                                tx,
                                &access.jti,
                                &next.family_id,
                                client_id,
                                next.user_id,
                                &next.sid,
                                &next.scope,
                                access.issued_at,
                                access.expires_at
                            );
                            return Ok($crate::Rotation::Rotated { presented: Box::new(presented), successor: Box::new(next) });
                        }
                        let row: Option<$crate::sql::RefreshRow> = $crate::sql::query_as(&format!(
                            "SELECT {} FROM refresh_tokens WHERE token_hash = $1",
                            $crate::sql::REFRESH_COLUMNS
                        ))
                        .bind(token_hash)
                        .fetch_optional(&mut *tx)
                        .await?;
                        let Some(row) = row else {
                            return Ok($crate::Rotation::Unknown);
                        };
                        let presented: $crate::RefreshTokenRecord = row.try_into()?;
                        let outcome = if presented.client_id != *client_id {
                            $crate::Rotation::OtherClient
                        } else if presented.revoked_at.is_some() {
                            $crate::Rotation::Revoked
                        } else if presented.rotated_at.is_none() {
                            $crate::Rotation::Expired
                        } else {
                            // Rotated before: an honest duplicate within the grace window, while
                            // the successor is still the live head of the family, gets the
                            // same successor; anything else is reuse.
                            let rotated_at = presented.rotated_at.unwrap_or(now);
                            let successor_row: Option<$crate::sql::RefreshRow> = match &presented.successor_hash {
                                Some(h) if now - rotated_at <= grace => $crate::sql::query_as(&format!(
                                    "SELECT {} FROM refresh_tokens WHERE token_hash = $1",
                                    $crate::sql::REFRESH_COLUMNS
                                ))
                                .bind(h)
                                .fetch_optional(&mut *tx)
                                .await?,
                                _ => None,
                            };
                            let live = match successor_row {
                                Some(r) => Some($crate::RefreshTokenRecord::try_from(r)?).filter(|s| s.is_live(now)),
                                None => None,
                            };
                            match (live, presented.successor_sealed.clone()) {
                                (Some(next), Some(sealed)) => {
                                    $crate::sql::insert_access!(
                                        tx,
                                        &access.jti,
                                        &next.family_id,
                                        client_id,
                                        next.user_id,
                                        &next.sid,
                                        &next.scope,
                                        access.issued_at,
                                        access.expires_at
                                    );
                                    $crate::Rotation::Grace {
                                        presented: Box::new(presented),
                                        successor: Box::new(next),
                                        sealed,
                                    }
                                }
                                _ => {
                                    let revoked = $crate::sql::revoke_family_tx!(tx, &presented.family_id, now);
                                    $crate::Rotation::Reused { revoked }
                                }
                            }
                        };
                        Ok(outcome)
                    })
                })
                .await
            }

            async fn revoke_family(&self, family_id: &str, now: i64) -> Result<u64, $crate::StoreError> {
                self.write((family_id.to_string(), now), |tx, (family_id, now)| {
                    Box::pin(async move { Ok($crate::sql::revoke_family_tx!(tx, family_id, now)) })
                })
                .await
            }

            async fn revoke_access_token(&self, jti: &str, now: i64) -> Result<bool, $crate::StoreError> {
                self.write((jti.to_string(), now), |tx, (jti, now)| {
                    Box::pin(async move {
                        let n = $crate::sql::query(
                            "UPDATE access_tokens SET revoked_at = $1 WHERE jti = $2 AND revoked_at IS NULL",
                        )
                        .bind(now)
                        .bind(jti)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        Ok(n > 0)
                    })
                })
                .await
            }

            async fn insert_access_token(&self, t: &$crate::AccessTokenRecord) -> Result<(), $crate::StoreError> {
                self.write(t.clone(), |conn, t| {
                    Box::pin(async move {
                        $crate::sql::insert_access!(conn, record = t);
                        Ok(())
                    })
                })
                .await
            }

            async fn insert_token_family(
                &self,
                t: &$crate::AccessTokenRecord,
                refresh: &$crate::NewRefreshToken,
            ) -> Result<(), $crate::StoreError> {
                self.write((t.clone(), refresh.clone()), |tx, (t, refresh)| {
                    Box::pin(async move {
                        $crate::sql::insert_access!(tx, record = t);
                        $crate::sql::insert_refresh!(tx, refresh);
                        Ok(())
                    })
                })
                .await
            }

            async fn insert_partner(&self, p: &$crate::Partner) -> Result<(), $crate::StoreError> {
                self.write(p.clone(), |tx, p| {
                    Box::pin(async move {
                        $crate::sql::change!(
                            tx,
                            $crate::sql::query(
                                "INSERT INTO partners (code, client_id, key_sealed, created_at, require_nonce) \
                                 VALUES ($1, $2, $3, $4, $5)",
                            )
                            .bind(&p.code)
                            .bind(&p.client_id)
                            .bind(&p.key_sealed)
                            .bind(p.created_at)
                            .bind(p.require_nonce),
                            conflict = "partner"
                        );
                        Ok(())
                    })
                })
                .await
            }

            async fn partner(&self, code: &str) -> Result<Option<$crate::Partner>, $crate::StoreError> {
                let row: Option<(String, String, Vec<u8>, i64, bool)> = $crate::sql::query_as(
                    "SELECT code, client_id, key_sealed, created_at, require_nonce FROM partners WHERE code = $1",
                )
                .bind(code)
                .fetch_optional(&mut *self.read().await?)
                .await?;
                Ok(row.map($crate::sql::partner))
            }

            async fn partners(&self) -> Result<Vec<$crate::Partner>, $crate::StoreError> {
                let rows: Vec<(String, String, Vec<u8>, i64, bool)> = $crate::sql::query_as(
                    "SELECT code, client_id, key_sealed, created_at, require_nonce FROM partners ORDER BY code",
                )
                .fetch_all(&mut *self.read().await?)
                .await?;
                Ok(rows.into_iter().map($crate::sql::partner).collect())
            }

            async fn delete_partner(&self, code: &str) -> Result<bool, $crate::StoreError> {
                self.write(code.to_string(), |tx, code| {
                    Box::pin(async move {
                        let n = $crate::sql::change!(tx, $crate::sql::query("DELETE FROM partners WHERE code = $1").bind(code));
                        Ok(n > 0)
                    })
                })
                .await
            }

            async fn acquire_lease(&self, name: &str, holder: &str, now: i64, until: i64) -> Result<bool, $crate::StoreError> {
                let args = (name.to_string(), holder.to_string(), now, until);
                self.write(args, |tx, (name, holder, now, until)| {
                    Box::pin(async move {
                        let got: Option<String> = $crate::sql::query_scalar(
                            "INSERT INTO job_leases (name, holder, until) VALUES ($1, $2, $3) \
                             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
                             WHERE job_leases.until < $4 OR job_leases.holder = excluded.holder \
                             RETURNING holder",
                        )
                        .bind(name)
                        .bind(holder)
                        .bind(until)
                        .bind(now)
                        .fetch_optional(&mut *tx)
                        .await?;
                        Ok(got.as_deref() == Some(holder.as_str()))
                    })
                })
                .await
            }

            async fn delete_expired(&self, kind: $crate::Expiring, before: i64, limit: i64) -> Result<u64, $crate::StoreError> {
                // By primary key in bounded batches: short transactions, no long locks.
                let (table, key, expiry) = (kind.table(), kind.key_column(), kind.expiry_column());
                let sql = format!(
                    "DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE {expiry} < $1 LIMIT $2)"
                );
                self.write((sql, before, limit), |tx, (sql, before, limit)| {
                    Box::pin(async move {
                        Ok($crate::sql::query(sql).bind(before).bind(limit).execute(&mut *tx).await?.rows_affected())
                    })
                })
                .await
            }

            async fn oldest_expired(&self, kind: $crate::Expiring, before: i64) -> Result<Option<i64>, $crate::StoreError> {
                let sql = format!("SELECT MIN({}) FROM {} WHERE {} < $1", kind.expiry_column(), kind.table(), kind.expiry_column());
                Ok($crate::sql::query_scalar(&sql).bind(before).fetch_one(&mut *self.read().await?).await?)
            }

            async fn row_counts(&self) -> Result<Vec<(&'static str, i64)>, $crate::StoreError> {
                let mut out = vec![];
                for table in ["clients", "users", "signing_keys", "session_clients", "consents"]
                    .into_iter()
                    .chain($crate::Expiring::ALL.iter().map(|k| k.table()))
                {
                    let n: i64 = $crate::sql::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&mut *self.read().await?).await?;
                    out.push((table, n));
                }
                Ok(out)
            }
        }
    };
}

pub(crate) use sql_store;
