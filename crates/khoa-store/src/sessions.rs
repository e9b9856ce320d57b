//! SSO sessions, the interactions (login and consent steps) that lead to them, the
//! clients each session signed in to, and the consents users granted.

use crate::db::{args, json, to_json, Conn, FromRow, Row};
use crate::engine::{Engine, SqlStore};
use crate::StoreError;
use async_trait::async_trait;
use khoa_core::session::{Interaction, Session};
use khoa_core::UnixTime;

#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    async fn insert_interaction(&self, interaction: &Interaction) -> Result<(), StoreError>;
    /// An interaction that has not expired at `now`.
    async fn interaction(&self, id_hash: &str, now: UnixTime) -> Result<Option<Interaction>, StoreError>;
    async fn set_interaction_session(&self, id_hash: &str, sid: &str) -> Result<bool, StoreError>;
    /// Ends an interaction; `true` for exactly one caller (so it completes once).
    async fn delete_interaction(&self, id_hash: &str) -> Result<bool, StoreError>;

    async fn insert_session(&self, session: &Session) -> Result<(), StoreError>;
    async fn session(&self, id_hash: &str) -> Result<Option<Session>, StoreError>;
    async fn session_by_sid(&self, sid: &str) -> Result<Option<Session>, StoreError>;
    /// Clients that received a code in the session, in the order they first did.
    async fn session_clients(&self, sid: &str) -> Result<Vec<String>, StoreError>;
    /// A step-up of the active session `old_id_hash`: it is now known by `new_id_hash`
    /// (the cookie rotates with the privilege), with the `amr` and `auth_time` of the
    /// stronger sign-in; its `sid`, and so its tokens, stay. `true` when it was active.
    async fn step_up_session(
        &self,
        old_id_hash: &str,
        new_id_hash: &str,
        amr: &[String],
        auth_time: UnixTime,
    ) -> Result<bool, StoreError>;
    /// The session was used at `now` (written only when later than what is stored).
    async fn touch_session(&self, sid: &str, now: UnixTime) -> Result<(), StoreError>;

    /// The scope the user granted the client, if any.
    async fn consent(&self, user_id: i64, client_id: &str) -> Result<Option<String>, StoreError>;
    async fn grant_consent(&self, user_id: i64, client_id: &str, scope: &str, now: UnixTime) -> Result<(), StoreError>;
}

pub(crate) const SESSION_COLUMNS: &str =
    "id_hash, sid, user_id, auth_time, amr, created_at, expires_at, ended_at, device, address, last_used_at";
const INTERACTION_COLUMNS: &str = "id_hash, csrf_token, request, sid, created_at, expires_at";

impl FromRow for Session {
    fn from_row(r: &mut Row) -> Result<Self, StoreError> {
        Ok(Session {
            id_hash: r.take()?,
            sid: r.take()?,
            user_id: r.take()?,
            auth_time: r.take()?,
            amr: json("amr", &r.take::<String>()?)?,
            created_at: r.take()?,
            expires_at: r.take()?,
            ended_at: r.take()?,
            device: r.take()?,
            address: r.take()?,
            last_used_at: r.take()?,
        })
    }
}

impl FromRow for Interaction {
    fn from_row(r: &mut Row) -> Result<Self, StoreError> {
        Ok(Interaction {
            id_hash: r.take()?,
            csrf_token: r.take()?,
            request: r.take()?,
            sid: r.take()?,
            created_at: r.take()?,
            expires_at: r.take()?,
        })
    }
}

#[async_trait]
impl<E: Engine> SessionStore for SqlStore<E> {
    async fn insert_interaction(&self, i: &Interaction) -> Result<(), StoreError> {
        let i = i.clone();
        self.write(move |db| {
            Box::pin(async move {
                db.exec(
                    &format!("INSERT INTO interactions ({INTERACTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
                    args![i.id_hash, i.csrf_token, i.request, i.sid, i.created_at, i.expires_at],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn interaction(&self, id_hash: &str, now: UnixTime) -> Result<Option<Interaction>, StoreError> {
        let id_hash = id_hash.to_owned();
        self.read(move |db| {
            Box::pin(async move {
                db.fetch_optional(
                    &format!("SELECT {INTERACTION_COLUMNS} FROM interactions WHERE id_hash = $1 AND expires_at > $2"),
                    args![id_hash, now],
                )
                .await
            })
        })
        .await
    }

    async fn set_interaction_session(&self, id_hash: &str, sid: &str) -> Result<bool, StoreError> {
        let (id_hash, sid) = (id_hash.to_owned(), sid.to_owned());
        self.write(move |db| {
            Box::pin(async move {
                Ok(db.exec("UPDATE interactions SET sid = $1 WHERE id_hash = $2", args![sid, id_hash]).await? > 0)
            })
        })
        .await
    }

    async fn delete_interaction(&self, id_hash: &str) -> Result<bool, StoreError> {
        let id_hash = id_hash.to_owned();
        self.write(move |db| {
            Box::pin(
                async move { Ok(db.exec("DELETE FROM interactions WHERE id_hash = $1", args![id_hash]).await? > 0) },
            )
        })
        .await
    }

    async fn insert_session(&self, s: &Session) -> Result<(), StoreError> {
        let s = s.clone();
        self.write(move |db| {
            Box::pin(async move {
                db.exec(
                    &format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"),
                    args![
                        s.id_hash,
                        s.sid,
                        s.user_id,
                        s.auth_time,
                        to_json(&s.amr),
                        s.created_at,
                        s.expires_at,
                        s.ended_at,
                        s.device,
                        s.address,
                        s.last_used_at
                    ],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn session(&self, id_hash: &str) -> Result<Option<Session>, StoreError> {
        let id_hash = id_hash.to_owned();
        self.read(move |db| {
            Box::pin(async move {
                db.fetch_optional(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id_hash = $1"), args![id_hash])
                    .await
            })
        })
        .await
    }

    async fn session_by_sid(&self, sid: &str) -> Result<Option<Session>, StoreError> {
        let sid = sid.to_owned();
        self.read(move |db| {
            Box::pin(async move {
                db.fetch_optional(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE sid = $1"), args![sid]).await
            })
        })
        .await
    }

    async fn step_up_session(
        &self,
        old_id_hash: &str,
        new_id_hash: &str,
        amr: &[String],
        auth_time: UnixTime,
    ) -> Result<bool, StoreError> {
        let (old, new, amr) = (old_id_hash.to_owned(), new_id_hash.to_owned(), to_json(&amr));
        self.write(move |db| {
            Box::pin(async move {
                let n = db
                    .exec(
                        "UPDATE sessions SET id_hash = $1, amr = $2, auth_time = $3 \
                         WHERE id_hash = $4 AND ended_at IS NULL",
                        args![new, amr, auth_time, old],
                    )
                    .await?;
                Ok(n == 1)
            })
        })
        .await
    }

    async fn touch_session(&self, sid: &str, now: UnixTime) -> Result<(), StoreError> {
        let sid = sid.to_owned();
        self.write(move |db| {
            Box::pin(async move {
                db.exec("UPDATE sessions SET last_used_at = $1 WHERE sid = $2 AND last_used_at < $1", args![now, sid])
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn session_clients(&self, sid: &str) -> Result<Vec<String>, StoreError> {
        let sid = sid.to_owned();
        self.read(move |db| {
            Box::pin(async move {
                let rows: Vec<(String,)> = db
                    .fetch_all(
                        "SELECT client_id FROM session_clients WHERE sid = $1 ORDER BY first_at, client_id",
                        args![sid],
                    )
                    .await?;
                Ok(rows.into_iter().map(|(c,)| c).collect())
            })
        })
        .await
    }

    async fn consent(&self, user_id: i64, client_id: &str) -> Result<Option<String>, StoreError> {
        let client_id = client_id.to_owned();
        self.read(move |db| {
            Box::pin(async move {
                db.scalar("SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2", args![user_id, client_id])
                    .await
            })
        })
        .await
    }

    async fn grant_consent(&self, user_id: i64, client_id: &str, scope: &str, now: UnixTime) -> Result<(), StoreError> {
        let (client_id, scope) = (client_id.to_owned(), scope.to_owned());
        self.write(move |db| {
            Box::pin(async move {
                db.exec(
                    "INSERT INTO consents (user_id, client_id, scope, granted_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (user_id, client_id) DO UPDATE SET scope = excluded.scope, granted_at = excluded.granted_at",
                    args![user_id, client_id, scope, now],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }
}
