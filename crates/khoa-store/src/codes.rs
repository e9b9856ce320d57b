//! Authorization codes (RFC 6749 §4.1.2): stored, redeemed at most once.

use crate::db::{args, json, to_json, Conn, FromRow, Row};
use crate::engine::{Engine, SqlStore};
use crate::tokens::{insert_access, insert_refresh, revoke_family, NewAccessToken, RefreshToken};
use crate::StoreError;
use async_trait::async_trait;
use khoa_core::audit::{kind, Actor, Event};
use khoa_core::code::{AuthorizationCode, CodeError};
use khoa_core::UnixTime;

#[async_trait]
pub trait CodeStore: Send + Sync + 'static {
    /// Stores a new code and records its client in the code's session.
    async fn insert_code(&self, code: &AuthorizationCode) -> Result<(), StoreError>;
    /// A code as stored, whatever its state (codes never change but for consumption).
    async fn code(&self, code_hash: &str) -> Result<Option<AuthorizationCode>, StoreError>;
    /// Whether `client_id` already redeemed another code with this PKCE challenge.
    async fn code_challenge_reused(
        &self,
        client_id: &str,
        challenge: &str,
        code_hash: &str,
    ) -> Result<bool, StoreError>;
    /// Consumes the code for `client_id` (RFC 6749 §4.1.2: at most once) and runs
    /// `check` on it (redirect URI, PKCE, expiry: §4.1.3, RFC 7636 §4.6). If the check
    /// passes, records `token` (and the refresh token that `refresh` builds, whose
    /// family is the code's hash) as issued from it; if it fails, the code stays
    /// consumed and nothing is issued. One transaction. A replay revokes every access
    /// and refresh token issued from the code.
    async fn redeem_code(
        &self,
        code_hash: &str,
        client_id: &str,
        now: UnixTime,
        check: CodeCheck,
        token: &NewAccessToken,
        refresh: RefreshFor,
    ) -> Result<Redemption, StoreError>;
}

/// The checks a consumed code must pass before tokens are issued from it.
pub type CodeCheck = Box<dyn FnOnce(&AuthorizationCode) -> Result<(), CodeError> + Send>;

/// Builds the refresh token to store with a code being redeemed, from the code as
/// consumed (its scope decides whether there is one), or `None`. It runs on the
/// store's writer, so it owns what it needs.
pub type RefreshFor = Box<dyn FnOnce(&AuthorizationCode) -> Option<RefreshToken> + Send>;

/// What happened when a client presented a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redemption {
    /// Consumed now, by this client; the access token was recorded with it.
    Redeemed(Box<AuthorizationCode>),
    /// Consumed now, but its check failed: nothing was issued, and it can never be
    /// redeemed again.
    Refused(CodeError),
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

const COLUMNS: &str = "code_hash, client_id, user_id, sid, redirect_uri, redirect_uri_sent, scope, nonce, \
    code_challenge, auth_time, amr, created_at, expires_at";

impl FromRow for AuthorizationCode {
    fn from_row(r: &mut Row) -> Result<Self, StoreError> {
        Ok(AuthorizationCode {
            code_hash: r.take()?,
            client_id: r.take()?,
            user_id: r.take()?,
            sid: r.take()?,
            redirect_uri: r.take()?,
            redirect_uri_sent: r.take()?,
            scope: r.take()?,
            nonce: r.take()?,
            code_challenge: r.take()?,
            auth_time: r.take()?,
            amr: json("amr", &r.take::<String>()?)?,
            created_at: r.take()?,
            expires_at: r.take()?,
        })
    }
}

async fn insert(db: &mut impl Conn, c: &AuthorizationCode) -> Result<(), StoreError> {
    db.exec(
        &format!("INSERT INTO authorization_codes ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"),
        args![
            c.code_hash,
            c.client_id,
            c.user_id,
            c.sid,
            c.redirect_uri,
            c.redirect_uri_sent,
            c.scope,
            c.nonce,
            c.code_challenge,
            c.auth_time,
            to_json(&c.amr),
            c.created_at,
            c.expires_at
        ],
    )
    .await?;
    db.exec(
        "INSERT INTO session_clients (sid, client_id, first_at) VALUES ($1, $2, $3) ON CONFLICT (sid, client_id) DO NOTHING",
        args![c.sid, c.client_id, c.created_at],
    )
    .await?;
    Ok(())
}

async fn redeem(
    db: &mut impl Conn,
    code_hash: &str,
    client_id: &str,
    now: UnixTime,
    check: CodeCheck,
    token: &NewAccessToken,
    refresh: RefreshFor,
) -> Result<Redemption, StoreError> {
    // RFC 6749 §4.1.2: a code is used at most once. The row lock (PostgreSQL) or the
    // write lock (SQLite) makes exactly one concurrent caller win. A code outlives no
    // logout: its session must not have ended.
    let consumed: Option<AuthorizationCode> = db
        .fetch_optional(
            &format!(
                "UPDATE authorization_codes SET consumed_at = $1 \
                 WHERE code_hash = $2 AND client_id = $3 AND consumed_at IS NULL \
                 AND EXISTS (SELECT 1 FROM sessions s WHERE s.sid = authorization_codes.sid AND s.ended_at IS NULL) \
                 RETURNING {COLUMNS}"
            ),
            args![now, code_hash, client_id],
        )
        .await?;
    if let Some(code) = consumed {
        if let Err(e) = check(&code) {
            return Ok(Redemption::Refused(e));
        }
        insert_access(db, token, &code.code_hash, &code.client_id, Some(code.user_id), Some(&code.sid), &code.scope)
            .await?;
        if let Some(r) = refresh(&code) {
            insert_refresh(db, &r).await?;
        }
        return Ok(Redemption::Redeemed(Box::new(code)));
    }
    let state: Option<(Option<i64>, String, i64)> = db
        .fetch_optional(
            "SELECT consumed_at, client_id, user_id FROM authorization_codes WHERE code_hash = $1",
            args![code_hash],
        )
        .await?;
    Ok(match state {
        None => Redemption::Unknown,
        Some((None, owner, _)) if owner != client_id => Redemption::OtherClient,
        Some((None, _, _)) => Redemption::SessionEnded,
        Some((Some(_), owner, user_id)) => {
            let revoked = revoke_family(db, code_hash, now).await?;
            // The attack is recorded with what it revoked, in the same transaction.
            let mut event = Event::new(now, kind::CODE_REPLAYED, Actor::Client(client_id.to_string())).client(&owner);
            event.user_id = Some(user_id);
            event.detail = serde_json::json!({ "tokens_revoked": revoked });
            crate::audit::insert(db, &event).await?;
            Redemption::Replayed { revoked }
        }
    })
}

#[async_trait]
impl<E: Engine> CodeStore for SqlStore<E> {
    async fn insert_code(&self, c: &AuthorizationCode) -> Result<(), StoreError> {
        let c = c.clone();
        self.write(move |db| Box::pin(async move { insert(db, &c).await })).await
    }

    async fn code(&self, code_hash: &str) -> Result<Option<AuthorizationCode>, StoreError> {
        let code_hash = code_hash.to_owned();
        self.read(move |db| {
            Box::pin(async move {
                db.fetch_optional(
                    &format!("SELECT {COLUMNS} FROM authorization_codes WHERE code_hash = $1"),
                    args![code_hash],
                )
                .await
            })
        })
        .await
    }

    async fn code_challenge_reused(
        &self,
        client_id: &str,
        challenge: &str,
        code_hash: &str,
    ) -> Result<bool, StoreError> {
        let (client_id, challenge, code_hash) = (client_id.to_owned(), challenge.to_owned(), code_hash.to_owned());
        self.read(move |db| {
            Box::pin(async move {
                // COUNT(*) is BIGINT on both databases (a bare `1` is INT4 on PostgreSQL).
                let n: Option<i64> = db
                    .scalar(
                        "SELECT COUNT(*) FROM authorization_codes WHERE client_id = $1 AND code_challenge = $2 \
                         AND code_hash <> $3 AND consumed_at IS NOT NULL",
                        args![client_id, challenge, code_hash],
                    )
                    .await?;
                Ok(n.unwrap_or(0) > 0)
            })
        })
        .await
    }

    async fn redeem_code(
        &self,
        code_hash: &str,
        client_id: &str,
        now: UnixTime,
        check: CodeCheck,
        token: &NewAccessToken,
        refresh: RefreshFor,
    ) -> Result<Redemption, StoreError> {
        let (code_hash, client_id, token) = (code_hash.to_owned(), client_id.to_owned(), token.clone());
        self.write(move |db| {
            Box::pin(async move { redeem(db, &code_hash, &client_id, now, check, &token, refresh).await })
        })
        .await
    }
}
