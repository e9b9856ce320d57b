//! Users, and the changes that end all of a user's sessions.

use crate::audit;
use crate::db::{args, change, json, to_json, values_rows, Conditions, Conn, FromRow, Row, Value};
use crate::engine::{Engine, SqlStore};
use crate::logout::{queue_notice, Notice};
use crate::{StoreError, Updated};
use async_trait::async_trait;
use khoa_core::audit::Event;
use khoa_core::session::Session;
use khoa_core::user::{username_key, NewUser, Profile, User};
use khoa_core::UnixTime;

/// Which user: by stable id (the admin API) or by username (the command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    Id(i64),
    Username(String),
}

impl From<&str> for UserRef {
    fn from(username: &str) -> Self {
        Self::Username(username.to_string())
    }
}

/// A page of users in id order: after `after_id`, the usernames and emails starting
/// with the given prefixes (case-insensitive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserQuery {
    pub after_id: Option<i64>,
    pub username_prefix: Option<String>,
    pub email_prefix: Option<String>,
    /// Exactly this address (ASCII letters' case ignored): "Forgot password?".
    pub email: Option<String>,
    pub limit: u32,
}

/// A user's active session, with the clients it signed in to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSession {
    pub session: Session,
    pub clients: Vec<String>,
}

/// A consent: the client, the scope granted, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub client_id: String,
    pub scope: String,
    pub granted_at: UnixTime,
}

/// Every change writes its audit event (`audit`) in its own transaction; the event's
/// `user_id` is filled in when the caller did not know it.
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// `Conflict("username")` when the username is taken, `Conflict("email")` when the
    /// user's address is verified and already verified on another account. Returns the
    /// user with its new stable id.
    async fn insert_user(&self, user: &NewUser, audit: &Event) -> Result<User, StoreError>;
    async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError>;
    async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError>;
    async fn users(&self) -> Result<Vec<User>, StoreError>;
    async fn users_page(&self, query: &UserQuery) -> Result<Vec<User>, StoreError>;
    /// Replaces the profile of user `id` if its revision is still `expected` (any when
    /// `None`). `Conflict` when the new username is taken.
    async fn update_user_profile(
        &self,
        id: i64,
        profile: &Profile,
        expected: Option<i64>,
        now: UnixTime,
        audit: &Event,
    ) -> Result<Updated, StoreError>;
    /// Stores `users` in one transaction, each that is not taken already, with an
    /// `audit` event per user created; for each, its new id or `None` when its username
    /// exists (import is idempotent: a second run creates nothing).
    async fn import_users(&self, users: &[NewUser], audit: &Event) -> Result<Vec<Option<i64>>, StoreError>;
    /// Replaces a verified password hash by khoa's own, if it is still `old` (a
    /// concurrent change wins); `true` when replaced. Sessions and tokens stay: the
    /// password is the same.
    async fn upgrade_password_hash(
        &self,
        id: i64,
        old: &str,
        new: &str,
        now: UnixTime,
        audit: &Event,
    ) -> Result<bool, StoreError>;
    /// Enables a disabled user (disabling is a [`UserChange`]: it ends the sessions).
    async fn enable_user(&self, id: i64, now: UnixTime, audit: &Event) -> Result<Updated, StoreError>;
    async fn user_sessions(&self, id: i64, now: UnixTime) -> Result<Vec<ActiveSession>, StoreError>;
    async fn user_consents(&self, id: i64) -> Result<Vec<Consent>, StoreError>;
    /// Ends every active SSO session of `user` but `keep_sid` (the session a user
    /// changes their own password in) and revokes every access and refresh token
    /// issued to them outside it (offline ones included), queues the back-channel
    /// notices of the ended sessions (kept until `keep_until`), applies `change` to the
    /// user and records `audit` (with what was ended in its detail) — all in one
    /// transaction. `None` when there is no such user (and nothing changed).
    async fn end_user_sessions(
        &self,
        user: UserRef,
        change: UserChange,
        keep_sid: Option<&str>,
        now: UnixTime,
        keep_until: UnixTime,
        audit: &Event,
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
    /// The user is disabled: no sign-in until enabled again.
    Disable,
}

/// What [`UserStore::end_user_sessions`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndedSessions {
    pub user_id: i64,
    pub sessions: u64,
    pub tokens: u64,
    pub notifications: u64,
}

/// What a new user's row is written with, in [`new_user_args`] order.
const NEW_COLUMNS: &str = "username, password_hash, email, email_verified, name, phone_number, \
    phone_number_verified, picture, created_at, updated_at, attributes, username_key";
/// How many values [`NEW_COLUMNS`] takes.
const NEW_ARITY: usize = 12;

/// The arguments of a new user's row ([`NEW_COLUMNS`]); `attributes` is its JSON,
/// `key` its username's key.
fn new_user_args<'a>(u: &'a NewUser, attributes: &'a String, key: &'a String) -> [Value<'a>; NEW_ARITY] {
    // The users row keeps no password since migration 0016: it is a credential.
    static NO_PASSWORD: String = String::new();
    [
        Value::from(&u.username),
        Value::from(&NO_PASSWORD),
        Value::from(&u.email),
        Value::from(&u.email_verified),
        Value::from(&u.name),
        Value::from(&u.phone_number),
        Value::from(&u.phone_number_verified),
        Value::from(&u.picture),
        Value::from(&u.created_at),
        Value::from(&u.created_at),
        Value::from(attributes),
        Value::from(key),
    ]
}

/// A user's columns; the password hash is their `password` credential's.
const COLUMNS: &str = "id, username, \
    (SELECT data FROM credentials WHERE credentials.user_id = users.id AND credentials.kind = 'password'), \
    email, email_verified, name, \
    phone_number, phone_number_verified, picture, created_at, updated_at, disabled_at, attributes, revision";

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
            disabled_at: r.take()?,
            attributes: json("attributes", &r.take::<String>()?)?,
            revision: r.take()?,
        })
    }
}

/// `audit` for `user_id`, unless it names a user already.
pub(crate) fn for_user(audit: &Event, user_id: i64) -> Event {
    let mut event = audit.clone();
    event.user_id = event.user_id.or(Some(user_id));
    event
}

/// `LIKE` of a prefix typed by someone: its wildcards match only themselves. The match
/// ignores the case of ASCII letters (both sides are lowered).
fn like_prefix(prefix: &str) -> String {
    let escaped: String = prefix
        .to_ascii_lowercase()
        .chars()
        .flat_map(|c| match c {
            '\\' | '%' | '_' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("{escaped}%")
}

/// Whether `email` is verified on an account other than `user_id` (none: any). On
/// PostgreSQL the transaction first locks the address (SQLite's single writer orders
/// transactions already), so two accounts claiming one address at once are ordered and
/// the second sees the first: an address is verified on one account at most.
pub(crate) async fn verified_elsewhere(
    db: &mut impl Conn,
    backend: crate::Backend,
    email: &str,
    user_id: Option<i64>,
) -> Result<bool, StoreError> {
    if backend == crate::Backend::Postgres {
        db.exec("SELECT pg_advisory_xact_lock(hashtext(LOWER($1)))", args![email]).await?;
    }
    let holders: Option<i64> = db
        .scalar(
            "SELECT COUNT(*) FROM users WHERE LOWER(email) = LOWER($1) AND email_verified AND id <> $2",
            args![email, user_id.unwrap_or(0)],
        )
        .await?;
    Ok(holders.unwrap_or(0) > 0)
}

/// Uses up every unused password reset link of `user_id`: its password or the address
/// the links were mailed to has changed, so none of them may set a password any more.
pub(crate) async fn cancel_reset_links(db: &mut impl Conn, user_id: i64, now: UnixTime) -> Result<u64, StoreError> {
    db.exec(
        "UPDATE account_tokens SET used_at = $1 WHERE user_id = $2 AND purpose = 'password_reset' AND used_at IS NULL",
        args![now, user_id],
    )
    .await
}

/// Ends the sessions of `user` but `keep_sid` ("" keeps none) and revokes their tokens
/// (those of no session, offline ones, included), then applies `user_change`.
pub(crate) async fn end_sessions(
    db: &mut impl Conn,
    user: &UserRef,
    user_change: &UserChange,
    keep_sid: &str,
    now: UnixTime,
    keep_until: UnixTime,
    audit_event: &Event,
) -> Result<Option<EndedSessions>, StoreError> {
    let found: Option<(i64, String)> = match user {
        UserRef::Id(id) => db.fetch_optional("SELECT id, username FROM users WHERE id = $1", args![*id]).await?,
        UserRef::Username(name) => {
            db.fetch_optional("SELECT id, username FROM users WHERE username = $1", args![name]).await?
        }
    };
    let Some((user_id, username)) = found else {
        return Ok(None);
    };
    // Back-channel notices for the clients of every session that ends.
    let notices: Vec<(String, String, String)> = db
        .fetch_all(
            "SELECT s.sid, c.client_id, c.backchannel_logout_uri FROM sessions s \
             JOIN session_clients sc ON sc.sid = s.sid JOIN clients c ON c.client_id = sc.client_id \
             WHERE s.user_id = $1 AND s.ended_at IS NULL AND s.expires_at > $2 AND s.sid <> $3 \
             AND c.backchannel_logout_uri IS NOT NULL ORDER BY s.sid, c.client_id",
            args![user_id, now, keep_sid],
        )
        .await?;
    let sessions = db
        .exec(
            "UPDATE sessions SET ended_at = $1 WHERE user_id = $2 AND ended_at IS NULL AND expires_at > $1 \
             AND sid <> $3",
            args![now, user_id, keep_sid],
        )
        .await?;
    let mut tokens = 0;
    for sql in [
        "UPDATE access_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL \
         AND (sid IS NULL OR sid <> $3)",
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL \
         AND (sid IS NULL OR sid <> $3)",
    ] {
        tokens += db.exec(sql, args![now, user_id, keep_sid]).await?;
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
            db.exec("DELETE FROM credentials WHERE user_id = $1 AND kind = 'password'", args![user_id]).await?;
            insert_passwords(db, &[(user_id, hash, now)]).await?;
            change(db, "UPDATE users SET updated_at = $1, revision = revision + 1 WHERE id = $2", args![now, user_id])
                .await?;
            // A reset link asked for before the change would undo it.
            cancel_reset_links(db, user_id, now).await?;
        }
        UserChange::Delete => {
            change(db, "DELETE FROM users WHERE id = $1", args![user_id]).await?;
        }
        UserChange::Disable => {
            change(
                db,
                "UPDATE users SET disabled_at = COALESCE(disabled_at, $1), updated_at = $1, revision = revision + 1 \
                 WHERE id = $2",
                args![now, user_id],
            )
            .await?;
        }
    }
    let ended = EndedSessions { user_id, sessions, tokens, notifications: notices.len() as u64 };
    let mut event = for_user(audit_event, user_id);
    if let serde_json::Value::Object(detail) = &mut event.detail {
        detail.insert("username".into(), username.into());
        detail.insert("sessions_ended".into(), ended.sessions.into());
        detail.insert("tokens_revoked".into(), ended.tokens.into());
        detail.insert("backchannel_notices".into(), ended.notifications.into());
    }
    audit::insert(db, &event).await?;
    Ok(Some(ended))
}

#[async_trait]
impl<E: Engine> UserStore for SqlStore<E> {
    async fn insert_user(&self, u: &NewUser, audit_event: &Event) -> Result<User, StoreError> {
        let (u, audit_event) = (u.clone(), audit_event.clone());
        self.write(move |db| {
            Box::pin(async move {
                let (attributes, key) = (to_json(&u.attributes), username_key(&u.username));
                let mut user: User = db
                    .fetch_one(
                        &format!(
                            "INSERT INTO users ({NEW_COLUMNS}) VALUES {} RETURNING {COLUMNS}",
                            values_rows(1, NEW_ARITY)
                        ),
                        &new_user_args(&u, &attributes, &key),
                    )
                    .await
                    .map_err(StoreError::conflict_as("username"))?;
                // A taken username is told first; then an address verified elsewhere
                // (the transaction, and the row with it, is undone).
                if let (Some(email), true) = (&u.email, u.email_verified) {
                    if verified_elsewhere(db, E::BACKEND, email, Some(user.id)).await? {
                        return Err(StoreError::Conflict("email"));
                    }
                }
                if let Some(hash) = &u.password_hash {
                    insert_passwords(db, &[(user.id, hash, u.created_at)]).await?;
                    user.password_hash = Some(hash.clone());
                }
                db.exec(crate::db::BUMP_EPOCH, &[]).await?;
                audit::insert(db, &for_user(&audit_event, user.id)).await?;
                Ok(user)
            })
        })
        .await
    }

    async fn import_users(&self, users: &[NewUser], audit_event: &Event) -> Result<Vec<Option<i64>>, StoreError> {
        let (users, audit_event) = (users.to_vec(), audit_event.clone());
        self.write(move |db| {
            Box::pin(async move {
                let mut out = Vec::with_capacity(users.len());
                // Many rows a statement: one round trip for each chunk, not for each user.
                for chunk in users.chunks(IMPORT_ROWS_PER_STATEMENT) {
                    out.extend(import_chunk(db, chunk, &audit_event).await?);
                }
                if out.iter().any(Option::is_some) {
                    db.exec(crate::db::BUMP_EPOCH, &[]).await?;
                }
                Ok(out)
            })
        })
        .await
    }

    async fn upgrade_password_hash(
        &self,
        id: i64,
        old: &str,
        new: &str,
        now: UnixTime,
        audit_event: &Event,
    ) -> Result<bool, StoreError> {
        let (old, new, audit_event) = (old.to_owned(), new.to_owned(), audit_event.clone());
        self.write(move |db| {
            Box::pin(async move {
                let n = db
                    .exec(
                        "UPDATE credentials SET data = $1 WHERE user_id = $2 AND kind = 'password' AND data = $3",
                        args![new, id, old],
                    )
                    .await?;
                if n > 0 {
                    change(
                        db,
                        "UPDATE users SET updated_at = $1, revision = revision + 1 WHERE id = $2",
                        args![now, id],
                    )
                    .await?;
                }
                if n > 0 {
                    audit::insert(db, &for_user(&audit_event, id)).await?;
                }
                Ok(n > 0)
            })
        })
        .await
    }

    async fn users_page(&self, q: &UserQuery) -> Result<Vec<User>, StoreError> {
        let limit = i64::from(q.limit);
        let after = q.after_id;
        let username = q.username_prefix.as_deref().map(like_prefix);
        let email = q.email_prefix.as_deref().map(like_prefix);
        let exact = q.email.as_deref().map(str::to_ascii_lowercase);
        self.read(move |db| {
            Box::pin(async move {
                let mut c = Conditions::default();
                c.when("id > ?", after.as_ref())
                    .when("LOWER(username) LIKE ? ESCAPE '\\'", username.as_ref())
                    .when("LOWER(email) LIKE ? ESCAPE '\\'", email.as_ref())
                    .when("LOWER(email) = ?", exact.as_ref());
                let sql =
                    format!("SELECT {COLUMNS} FROM users{} ORDER BY id LIMIT {}", c.where_sql(), c.next_placeholder());
                c.args.push(Value::from(&limit));
                db.fetch_all(&sql, &c.args).await
            })
        })
        .await
    }

    async fn update_user_profile(
        &self,
        id: i64,
        p: &Profile,
        expected: Option<i64>,
        now: UnixTime,
        audit_event: &Event,
    ) -> Result<Updated, StoreError> {
        let (p, audit_event) = (p.clone(), audit_event.clone());
        self.write(move |db| {
            Box::pin(async move {
                let attributes = to_json(&p.attributes);
                let old_email: Option<Option<String>> =
                    db.scalar::<Option<String>>("SELECT email FROM users WHERE id = $1", args![id]).await?;
                let mut sql = "UPDATE users SET username = $1, email = $2, email_verified = $3, name = $4, \
                     phone_number = $5, phone_number_verified = $6, picture = $7, attributes = $8, updated_at = $9, \
                     revision = revision + 1, username_key = $11 WHERE id = $10"
                    .to_string();
                if let Some(revision) = expected {
                    // An integer of ours, not input text.
                    sql.push_str(&format!(" AND revision = {revision}"));
                }
                let n = change(
                    db,
                    &sql,
                    args![
                        p.username,
                        p.email,
                        p.email_verified,
                        p.name,
                        p.phone_number,
                        p.phone_number_verified,
                        p.picture,
                        attributes,
                        now,
                        id,
                        username_key(&p.username)
                    ],
                )
                .await
                .map_err(StoreError::conflict_as("username"))?;
                if n > 0 {
                    let same = |a: &Option<String>, b: &Option<String>| {
                        a.as_deref().map(str::to_lowercase) == b.as_deref().map(str::to_lowercase)
                    };
                    if old_email.is_some_and(|old| !same(&old, &p.email)) {
                        cancel_reset_links(db, id, now).await?;
                    }
                    audit::insert(db, &for_user(&audit_event, id)).await?;
                }
                revision_outcome(db, id, n > 0).await
            })
        })
        .await
    }

    async fn enable_user(&self, id: i64, now: UnixTime, audit_event: &Event) -> Result<Updated, StoreError> {
        let audit_event = audit_event.clone();
        self.write(move |db| {
            Box::pin(async move {
                let n = change(
                    db,
                    "UPDATE users SET disabled_at = NULL, updated_at = $1, revision = revision + 1 \
                     WHERE id = $2 AND disabled_at IS NOT NULL",
                    args![now, id],
                )
                .await?;
                if n > 0 {
                    audit::insert(db, &for_user(&audit_event, id)).await?;
                }
                // Enabling an enabled user changes nothing, and succeeds.
                revision_outcome(db, id, true).await
            })
        })
        .await
    }

    async fn user_sessions(&self, id: i64, now: UnixTime) -> Result<Vec<ActiveSession>, StoreError> {
        self.read(move |db| {
            Box::pin(async move {
                let sessions: Vec<Session> = db
                    .fetch_all(
                        &format!(
                            "SELECT {} FROM sessions WHERE user_id = $1 AND ended_at IS NULL AND expires_at > $2 \
                             ORDER BY created_at DESC, sid",
                            crate::sessions::SESSION_COLUMNS
                        ),
                        args![id, now],
                    )
                    .await?;
                // The clients of all of them in one statement, not one per session.
                let clients: Vec<(String, String)> = db
                    .fetch_all(
                        "SELECT sc.sid, sc.client_id FROM session_clients sc JOIN sessions s ON s.sid = sc.sid \
                         WHERE s.user_id = $1 AND s.ended_at IS NULL AND s.expires_at > $2 \
                         ORDER BY sc.first_at, sc.client_id",
                        args![id, now],
                    )
                    .await?;
                let out = sessions
                    .into_iter()
                    .map(|session| {
                        let of =
                            clients.iter().filter(|(sid, _)| *sid == session.sid).map(|(_, c)| c.clone()).collect();
                        ActiveSession { session, clients: of }
                    })
                    .collect();
                Ok(out)
            })
        })
        .await
    }

    async fn user_consents(&self, id: i64) -> Result<Vec<Consent>, StoreError> {
        self.read(move |db| {
            Box::pin(async move {
                let rows: Vec<(String, String, i64)> = db
                    .fetch_all(
                        "SELECT client_id, scope, granted_at FROM consents WHERE user_id = $1 ORDER BY client_id",
                        args![id],
                    )
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|(client_id, scope, granted_at)| Consent { client_id, scope, granted_at })
                    .collect())
            })
        })
        .await
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        let username = username.to_owned();
        self.read(move |db| {
            Box::pin(async move {
                // As typed first; else the one whose key it has (`Alice` signs in as
                // `alice`). A username that lost its key to a collision is found as typed.
                let key = username_key(&username);
                db.fetch_optional(
                    &format!(
                        "SELECT {COLUMNS} FROM users WHERE username = $1 OR username_key = $2 \
                         ORDER BY CASE WHEN username = $1 THEN 0 ELSE 1 END LIMIT 1"
                    ),
                    args![username, key],
                )
                .await
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
        user: UserRef,
        user_change: UserChange,
        keep_sid: Option<&str>,
        now: UnixTime,
        keep_until: UnixTime,
        audit_event: &Event,
    ) -> Result<Option<EndedSessions>, StoreError> {
        let (keep_sid, audit_event) = (keep_sid.unwrap_or_default().to_owned(), audit_event.clone());
        self.write(move |db| {
            Box::pin(
                async move { end_sessions(db, &user, &user_change, &keep_sid, now, keep_until, &audit_event).await },
            )
        })
        .await
    }
}

/// What a conditional update of user `id` came to.
async fn revision_outcome(db: &mut impl Conn, id: i64, written: bool) -> Result<Updated, StoreError> {
    Ok(Updated::of(written, db.scalar("SELECT revision FROM users WHERE id = $1", args![id]).await?))
}

/// Users one import statement inserts (11 arguments each, far below either backend's
/// limit on arguments).
const IMPORT_ROWS_PER_STATEMENT: usize = 500;

/// Inserts `chunk` in one statement, skipping taken usernames, and records an event
/// per user created; the new id of each, or `None` (a username that existed, or that
/// came earlier in the same import).
async fn import_chunk(
    db: &mut impl Conn,
    chunk: &[NewUser],
    audit_event: &Event,
) -> Result<Vec<Option<i64>>, StoreError> {
    let attributes: Vec<String> = chunk.iter().map(|u| to_json(&u.attributes)).collect();
    let keys: Vec<String> = chunk.iter().map(|u| username_key(&u.username)).collect();
    let args: Vec<Value<'_>> =
        chunk.iter().zip(&attributes).zip(&keys).flat_map(|((u, a), k)| new_user_args(u, a, k)).collect();
    // Skipped: a username, or its key, that exists (or came earlier in the import).
    let sql = format!(
        "INSERT INTO users ({NEW_COLUMNS}) VALUES {} ON CONFLICT DO NOTHING RETURNING id, username",
        values_rows(chunk.len(), NEW_ARITY)
    );
    let inserted: Vec<(i64, String)> = db.fetch_all(&sql, &args).await?;
    let mut ids: std::collections::HashMap<String, i64> = inserted.into_iter().map(|(id, name)| (name, id)).collect();
    let mut out = Vec::with_capacity(chunk.len());
    let mut events = Vec::new();
    let mut passwords = Vec::new();
    for u in chunk {
        // The first line of a username gets its id; a later one of the same is a duplicate.
        let id = ids.remove(&u.username);
        if let Some(id) = id {
            if let Some(hash) = &u.password_hash {
                passwords.push((id, hash, u.created_at));
            }
            let mut event = for_user(audit_event, id);
            if let serde_json::Value::Object(detail) = &mut event.detail {
                detail.insert("username".into(), u.username.clone().into());
            }
            events.push(event);
        }
        out.push(id);
    }
    insert_passwords(db, &passwords).await?;
    audit::insert_many(db, &events).await?;
    Ok(out)
}

/// Stores each `(user, hash, at)` as that user's password credential, in one statement.
async fn insert_passwords(db: &mut impl Conn, passwords: &[(i64, &String, UnixTime)]) -> Result<(), StoreError> {
    if passwords.is_empty() {
        return Ok(());
    }
    let args: Vec<Value<'_>> = passwords
        .iter()
        .flat_map(|(id, hash, at)| [Value::from(id), Value::from("password"), Value::from(*hash), Value::from(at)])
        .collect();
    let sql =
        format!("INSERT INTO credentials (user_id, kind, data, created_at) VALUES {}", values_rows(passwords.len(), 4));
    db.exec(&sql, &args).await?;
    Ok(())
}
