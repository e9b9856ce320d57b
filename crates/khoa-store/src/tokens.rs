//! Issued access tokens and refresh tokens: their records, rotation (the rule is
//! `khoa_core::refresh`) and revocation by family.

use crate::db::{args, json, to_json, Conn, FromRow, Row};
use crate::engine::{Engine, SqlStore};
use crate::StoreError;
use async_trait::async_trait;
use khoa_core::audit::{kind, Actor, Event};
use khoa_core::refresh::{self, Outcome, Presented};
use khoa_core::UnixTime;

#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    async fn access_token(&self, jti: &str) -> Result<Option<AccessTokenRecord>, StoreError>;
    /// Records an access token that comes from no code or refresh token
    /// (client_credentials).
    async fn insert_access_token(&self, token: &AccessTokenRecord) -> Result<(), StoreError>;
    /// Starts a token family outside the code flow (a partner's password login): its
    /// first access and refresh token, in one transaction.
    async fn insert_token_family(&self, access: &AccessTokenRecord, refresh: &RefreshToken) -> Result<(), StoreError>;
    async fn revoke_access_token(&self, jti: &str, now: UnixTime) -> Result<bool, StoreError>;

    async fn refresh_token(&self, token_hash: &str) -> Result<Option<RefreshTokenRecord>, StoreError>;
    /// Presents a refresh token for rotation by `client_id` (see
    /// [`khoa_core::refresh::classify`]): the winner stores the successor; duplicates
    /// within `grace` seconds of the rotation get the same successor; later ones
    /// revoke the family. `access` is recorded, with the scope of the refresh token
    /// handed out, unless refused.
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
    /// Clears the sealed successor handle of refresh tokens rotated before `before` (the
    /// grace window is over, so it can never be handed out again); at most `limit`.
    async fn clear_sealed_successors(&self, before: UnixTime, limit: i64) -> Result<u64, StoreError>;
}

/// An access token as minted: its id and validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccessToken {
    pub jti: String,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
}

/// An issued access token as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenRecord {
    pub token: NewAccessToken,
    /// The code's hash or the refresh family it was issued from (or a grant of its own).
    pub grant_id: String,
    pub client_id: String,
    pub user_id: Option<i64>,
    pub sid: Option<String>,
    pub scope: String,
    pub revoked_at: Option<UnixTime>,
}

/// A refresh token as issued (its handle is known only to the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
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
}

/// A stored refresh token: as issued, and what has happened to it since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    pub token: RefreshToken,
    pub rotated_at: Option<UnixTime>,
    pub successor_hash: Option<String>,
    /// The successor's handle sealed under the master key, kept for the grace window.
    pub successor_sealed: Option<Vec<u8>>,
    pub revoked_at: Option<UnixTime>,
}

impl RefreshTokenRecord {
    fn presented(&self) -> Presented<'_> {
        Presented {
            client_id: &self.token.client_id,
            expires_at: self.token.expires_at,
            rotated_at: self.rotated_at,
            revoked: self.revoked_at.is_some(),
        }
    }

    /// Neither rotated nor revoked nor expired.
    pub fn is_live(&self, now: UnixTime) -> bool {
        refresh::classify(&self.presented(), &self.token.client_id, now, 0) == Outcome::Rotate
    }
}

/// The successor of a refresh token presented for rotation. Its handle (`token_hash`,
/// and the handle `sealed` for the grace window) is chosen beforehand; the rest of its
/// row is built by `row` from the presented token's record, read by the rotation
/// itself, or `None` refuses the rotation. The row's own `token_hash` is replaced by
/// this one.
pub struct RefreshSuccessor {
    pub token_hash: String,
    pub sealed: Vec<u8>,
    pub row: SuccessorRow,
}

/// Builds a successor's row from the presented token's record (see [`RefreshSuccessor`]).
pub type SuccessorRow = Box<dyn FnOnce(&RefreshTokenRecord) -> Option<RefreshToken> + Send>;

/// What happened when a client presented a refresh token for rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// This presentation won: the successor was stored and the access token recorded.
    /// `presented` is the rotated token's record (`rotated_at` now set).
    Rotated {
        presented: Box<RefreshTokenRecord>,
        successor: Box<RefreshToken>,
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

const ACCESS_COLUMNS: &str = "jti, grant_id, client_id, user_id, sid, scope, issued_at, expires_at, revoked_at";
const REFRESH_COLUMNS: &str = "token_hash, family_id, client_id, user_id, sid, scope, auth_time, amr, \
    offline, issued_at, expires_at, rotated_at, successor_hash, successor_sealed, revoked_at";

impl FromRow for AccessTokenRecord {
    fn from_row(r: &mut Row) -> Result<Self, StoreError> {
        let jti = r.take()?;
        let (grant_id, client_id, user_id, sid, scope) = (r.take()?, r.take()?, r.take()?, r.take()?, r.take()?);
        let token = NewAccessToken { jti, issued_at: r.take()?, expires_at: r.take()? };
        Ok(AccessTokenRecord { token, grant_id, client_id, user_id, sid, scope, revoked_at: r.take()? })
    }
}

impl FromRow for RefreshTokenRecord {
    fn from_row(r: &mut Row) -> Result<Self, StoreError> {
        Ok(RefreshTokenRecord {
            token: RefreshToken {
                token_hash: r.take()?,
                family_id: r.take()?,
                client_id: r.take()?,
                user_id: r.take()?,
                sid: r.take()?,
                scope: r.take()?,
                auth_time: r.take()?,
                amr: json("amr", &r.take::<String>()?)?,
                offline: r.take()?,
                issued_at: r.take()?,
                expires_at: r.take()?,
            },
            rotated_at: r.take()?,
            successor_hash: r.take()?,
            successor_sealed: r.take()?,
            revoked_at: r.take()?,
        })
    }
}

/// Records an access token inside the caller's transaction.
pub(crate) async fn insert_access(
    db: &mut impl Conn,
    t: &NewAccessToken,
    grant_id: &str,
    client_id: &str,
    user_id: Option<i64>,
    sid: Option<&str>,
    scope: &str,
) -> Result<(), StoreError> {
    db.exec(
        &format!("INSERT INTO access_tokens ({ACCESS_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)"),
        args![t.jti, grant_id, client_id, user_id, sid, scope, t.issued_at, t.expires_at],
    )
    .await?;
    Ok(())
}

async fn insert_access_record(db: &mut impl Conn, t: &AccessTokenRecord) -> Result<(), StoreError> {
    insert_access(db, &t.token, &t.grant_id, &t.client_id, t.user_id, t.sid.as_deref(), &t.scope).await
}

/// Stores a refresh token inside the caller's transaction.
pub(crate) async fn insert_refresh(db: &mut impl Conn, r: &RefreshToken) -> Result<(), StoreError> {
    db.exec(
        &format!(
            "INSERT INTO refresh_tokens ({REFRESH_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, NULL, NULL, NULL)"
        ),
        args![
            r.token_hash,
            r.family_id,
            r.client_id,
            r.user_id,
            r.sid,
            r.scope,
            r.auth_time,
            to_json(&r.amr),
            r.offline,
            r.issued_at,
            r.expires_at
        ],
    )
    .await?;
    Ok(())
}

/// Revokes a family's refresh and access tokens inside the caller's transaction.
pub(crate) async fn revoke_family(db: &mut impl Conn, family: &str, now: UnixTime) -> Result<u64, StoreError> {
    let refresh = db
        .exec(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
            args![now, family],
        )
        .await?;
    let access = db
        .exec("UPDATE access_tokens SET revoked_at = $1 WHERE grant_id = $2 AND revoked_at IS NULL", args![now, family])
        .await?;
    Ok(refresh + access)
}

async fn refresh_record(db: &mut impl Conn, token_hash: &str) -> Result<Option<RefreshTokenRecord>, StoreError> {
    db.fetch_optional(&format!("SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE token_hash = $1"), args![token_hash])
        .await
}

/// RFC 9700 §4.14.2: a rotated token presented again revokes its family; the
/// detection is recorded in the same transaction.
async fn reused(
    db: &mut impl Conn,
    presented: &RefreshTokenRecord,
    client_id: &str,
    now: UnixTime,
) -> Result<Rotation, StoreError> {
    let revoked = revoke_family(db, &presented.token.family_id, now).await?;
    let mut event = Event::new(now, kind::REFRESH_TOKEN_REUSED, Actor::Client(client_id.to_string()))
        .client(&presented.token.client_id);
    event.user_id = Some(presented.token.user_id);
    event.detail = serde_json::json!({ "tokens_revoked": revoked });
    crate::audit::insert(db, &event).await?;
    Ok(Rotation::Reused { revoked })
}

async fn rotate(
    db: &mut impl Conn,
    token_hash: &str,
    client_id: &str,
    now: UnixTime,
    grace: i64,
    successor: RefreshSuccessor,
    access: &NewAccessToken,
) -> Result<Rotation, StoreError> {
    // Outcome::Rotate, atomically: exactly one concurrent presentation matches
    // `rotated_at IS NULL` (the row lock on PostgreSQL, the write lock on SQLite order
    // them). The winner reads the token it rotated from RETURNING.
    let won: Option<RefreshTokenRecord> = db
        .fetch_optional(
            &format!(
                "UPDATE refresh_tokens SET rotated_at = $1, successor_hash = $2, successor_sealed = $3 \
                 WHERE token_hash = $4 AND client_id = $5 AND rotated_at IS NULL AND revoked_at IS NULL \
                 AND expires_at > $1 RETURNING {REFRESH_COLUMNS}"
            ),
            args![now, successor.token_hash, successor.sealed, token_hash, client_id],
        )
        .await?;
    if let Some(presented) = won {
        let RefreshSuccessor { token_hash: next_hash, row, .. } = successor;
        let Some(built) = row(&presented) else {
            // Refused: the rotation is undone within its own transaction.
            db.exec(
                "UPDATE refresh_tokens SET rotated_at = NULL, successor_hash = NULL, successor_sealed = NULL \
                 WHERE token_hash = $1",
                args![token_hash],
            )
            .await?;
            return Ok(Rotation::Refused);
        };
        let next = RefreshToken { token_hash: next_hash, ..built };
        insert_refresh(db, &next).await?;
        insert_access(db, access, &next.family_id, client_id, Some(next.user_id), next.sid.as_deref(), &next.scope)
            .await?;
        return Ok(Rotation::Rotated { presented: Box::new(presented), successor: Box::new(next) });
    }
    let Some(presented) = refresh_record(db, token_hash).await? else {
        return Ok(Rotation::Unknown);
    };
    Ok(match refresh::classify(&presented.presented(), client_id, now, grace) {
        Outcome::OtherClient => Rotation::OtherClient,
        Outcome::Revoked => Rotation::Revoked,
        // The conditional update above found it not live: expired (Rotate cannot
        // happen here, the update having just refused it).
        Outcome::Expired | Outcome::Rotate => Rotation::Expired,
        Outcome::Reuse => reused(db, &presented, client_id, now).await?,
        Outcome::Duplicate => {
            let successor = match &presented.successor_hash {
                Some(h) => refresh_record(db, h).await?,
                None => None,
            };
            let live = successor.as_ref().is_some_and(|s| s.is_live(now));
            match (
                refresh::duplicate(live, presented.successor_sealed.is_some()),
                successor,
                presented.successor_sealed.clone(),
            ) {
                (Outcome::Duplicate, Some(next), Some(sealed)) => {
                    let t = &next.token;
                    insert_access(db, access, &t.family_id, client_id, Some(t.user_id), t.sid.as_deref(), &t.scope)
                        .await?;
                    Rotation::Grace { presented: Box::new(presented), successor: Box::new(next), sealed }
                }
                _ => reused(db, &presented, client_id, now).await?,
            }
        }
    })
}

#[async_trait]
impl<E: Engine> TokenStore for SqlStore<E> {
    async fn access_token(&self, jti: &str) -> Result<Option<AccessTokenRecord>, StoreError> {
        let jti = jti.to_owned();
        self.read(move |db| {
            Box::pin(async move {
                db.fetch_optional(&format!("SELECT {ACCESS_COLUMNS} FROM access_tokens WHERE jti = $1"), args![jti])
                    .await
            })
        })
        .await
    }

    async fn insert_access_token(&self, t: &AccessTokenRecord) -> Result<(), StoreError> {
        let t = t.clone();
        self.write(move |db| Box::pin(async move { insert_access_record(db, &t).await })).await
    }

    async fn insert_token_family(&self, t: &AccessTokenRecord, refresh: &RefreshToken) -> Result<(), StoreError> {
        let (t, refresh) = (t.clone(), refresh.clone());
        self.write(move |db| {
            Box::pin(async move {
                insert_access_record(db, &t).await?;
                insert_refresh(db, &refresh).await
            })
        })
        .await
    }

    async fn revoke_access_token(&self, jti: &str, now: UnixTime) -> Result<bool, StoreError> {
        let jti = jti.to_owned();
        self.write(move |db| {
            Box::pin(async move {
                let n = db
                    .exec(
                        "UPDATE access_tokens SET revoked_at = $1 WHERE jti = $2 AND revoked_at IS NULL",
                        args![now, jti],
                    )
                    .await?;
                Ok(n > 0)
            })
        })
        .await
    }

    async fn refresh_token(&self, token_hash: &str) -> Result<Option<RefreshTokenRecord>, StoreError> {
        let token_hash = token_hash.to_owned();
        self.read(move |db| Box::pin(async move { refresh_record(db, &token_hash).await })).await
    }

    async fn rotate_refresh_token(
        &self,
        token_hash: &str,
        client_id: &str,
        now: UnixTime,
        grace: i64,
        successor: RefreshSuccessor,
        access: &NewAccessToken,
    ) -> Result<Rotation, StoreError> {
        let (token_hash, client_id, access) = (token_hash.to_owned(), client_id.to_owned(), access.clone());
        self.write(move |db| {
            Box::pin(async move { rotate(db, &token_hash, &client_id, now, grace, successor, &access).await })
        })
        .await
    }

    async fn revoke_family(&self, family_id: &str, now: UnixTime) -> Result<u64, StoreError> {
        let family_id = family_id.to_owned();
        self.write(move |db| Box::pin(async move { revoke_family(db, &family_id, now).await })).await
    }

    async fn clear_sealed_successors(&self, before: UnixTime, limit: i64) -> Result<u64, StoreError> {
        self.write(move |db| {
            Box::pin(async move {
                db.exec(
                    "UPDATE refresh_tokens SET successor_sealed = NULL WHERE token_hash IN \
                     (SELECT token_hash FROM refresh_tokens WHERE successor_sealed IS NOT NULL \
                      AND rotated_at < $1 LIMIT $2)",
                    args![before, limit],
                )
                .await
            })
        })
        .await
    }
}
