//! Users, and the changes that end all of a user's sessions.

use crate::db::{args, change, Conn, FromRow, Row};
use crate::engine::{Engine, SqlStore};
use crate::logout::{queue_notice, Notice};
use crate::StoreError;
use async_trait::async_trait;
use khoa_core::user::{NewUser, User};
use khoa_core::UnixTime;

#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// `Conflict` when the username is taken. Returns the user with its new stable id.
    async fn insert_user(&self, user: &NewUser) -> Result<User, StoreError>;
    async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError>;
    async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError>;
    async fn users(&self) -> Result<Vec<User>, StoreError>;
    /// Ends every active SSO session of the user named `username` and revokes every
    /// access and refresh token issued to them (offline ones included), queues the
    /// back-channel notices of the ended sessions (kept until `keep_until`), and
    /// applies `change` to the user — all in one transaction. `None` when there is no
    /// such user (and nothing changed).
    async fn end_user_sessions(
        &self,
        username: &str,
        change: UserChange,
        now: UnixTime,
        keep_until: UnixTime,
    ) -> Result<Option<EndedSessions>, StoreError>;
}

/// What else happens to a user whose sessions all end (see [`UserStore::end_user_sessions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserChange {
    /// Nothing: `khoa user revoke-sessions`.
    None,
    /// The password is replaced by this hash.
    Password { hash: String },
    /// The user is deleted (their consents go with them).
    Delete,
}

/// What [`UserStore::end_user_sessions`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndedSessions {
    pub user_id: i64,
    pub sessions: u64,
    pub tokens: u64,
    pub notifications: u64,
}

const COLUMNS: &str = "id, username, password_hash, email, email_verified, name, \
    phone_number, phone_number_verified, picture, created_at, updated_at";

impl FromRow for User {
    fn from_row(r: &mut Row) -> Result<Self, StoreError> {
        Ok(User {
            id: r.take()?,
            username: r.take()?,
            password_hash: r.take()?,
            email: r.take()?,
            email_verified: r.take()?,
            name: r.take()?,
            phone_number: r.take()?,
            phone_number_verified: r.take()?,
            picture: r.take()?,
            created_at: r.take()?,
            updated_at: r.take()?,
        })
    }
}

async fn end_sessions(
    db: &mut impl Conn,
    username: &str,
    user_change: &UserChange,
    now: UnixTime,
    keep_until: UnixTime,
) -> Result<Option<EndedSessions>, StoreError> {
    let Some(user_id) = db.scalar::<i64>("SELECT id FROM users WHERE username = $1", args![username]).await? else {
        return Ok(None);
    };
    // Back-channel notices for the clients of every session that ends.
    let notices: Vec<(String, String, String)> = db
        .fetch_all(
            "SELECT s.sid, c.client_id, c.backchannel_logout_uri FROM sessions s \
             JOIN session_clients sc ON sc.sid = s.sid JOIN clients c ON c.client_id = sc.client_id \
             WHERE s.user_id = $1 AND s.ended_at IS NULL AND s.expires_at > $2 \
             AND c.backchannel_logout_uri IS NOT NULL ORDER BY s.sid, c.client_id",
            args![user_id, now],
        )
        .await?;
    let sessions = db
        .exec(
            "UPDATE sessions SET ended_at = $1 WHERE user_id = $2 AND ended_at IS NULL AND expires_at > $1",
            args![now, user_id],
        )
        .await?;
    let mut tokens = 0;
    for sql in [
        "UPDATE access_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
    ] {
        tokens += db.exec(sql, args![now, user_id]).await?;
    }
    for (sid, client_id, uri) in &notices {
        let notice = Notice {
            id: khoa_core::random::random_token::<16>(),
            client_id: client_id.clone(),
            uri: uri.clone(),
            sub: user_id.to_string(),
            sid: sid.clone(),
        };
        queue_notice(db, &notice, now, keep_until).await?;
    }
    match user_change {
        UserChange::None => {}
        UserChange::Password { hash } => {
            change(db, "UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3", args![hash, now, user_id])
                .await?;
        }
        UserChange::Delete => {
            change(db, "DELETE FROM users WHERE id = $1", args![user_id]).await?;
        }
    }
    Ok(Some(EndedSessions { user_id, sessions, tokens, notifications: notices.len() as u64 }))
}

#[async_trait]
impl<E: Engine> UserStore for SqlStore<E> {
    async fn insert_user(&self, u: &NewUser) -> Result<User, StoreError> {
        let u = u.clone();
        self.write(move |db| {
            Box::pin(async move {
                let user: User = db
                    .fetch_one(
                        &format!(
                            "INSERT INTO users (username, password_hash, email, email_verified, name, phone_number, \
                             phone_number_verified, picture, created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING {COLUMNS}"
                        ),
                        args![
                            u.username,
                            u.password_hash,
                            u.email,
                            u.email_verified,
                            u.name,
                            u.phone_number,
                            u.phone_number_verified,
                            u.picture,
                            u.created_at
                        ],
                    )
                    .await
                    .map_err(StoreError::conflict_as("username"))?;
                db.exec(crate::db::BUMP_EPOCH, &[]).await?;
                Ok(user)
            })
        })
        .await
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        let username = username.to_owned();
        self.read(move |db| {
            Box::pin(async move {
                db.fetch_optional(&format!("SELECT {COLUMNS} FROM users WHERE username = $1"), args![username]).await
            })
        })
        .await
    }

    async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        self.read(move |db| {
            Box::pin(async move {
                db.fetch_optional(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"), args![id]).await
            })
        })
        .await
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        self.read(|db| {
            Box::pin(async move { db.fetch_all(&format!("SELECT {COLUMNS} FROM users ORDER BY id"), &[]).await })
        })
        .await
    }

    async fn end_user_sessions(
        &self,
        username: &str,
        user_change: UserChange,
        now: UnixTime,
        keep_until: UnixTime,
    ) -> Result<Option<EndedSessions>, StoreError> {
        let username = username.to_owned();
        self.write(move |db| Box::pin(async move { end_sessions(db, &username, &user_change, now, keep_until).await }))
            .await
    }
}
