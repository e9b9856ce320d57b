//! Users as the admin API and the command line change them: one validation (the core's
//! `Profile` and password rules), one representation, an audit event in the
//! transaction of every change.

use super::{ChangeError, Who};
use crate::app::passwords::Passwords;
use khoa_core::audit::{self, kind};
use khoa_core::password::validate_new_password;
use khoa_core::user::{Profile, User, UserError};
use khoa_store::{EndedSessions, Store, StoreError, Updated, UserChange, UserRef};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

impl From<UserError> for ChangeError {
    fn from(e: UserError) -> Self {
        Self::invalid(e.field(), e.to_string())
    }
}

/// What an operator sets on a user (its password apart). Members left out take their
/// defaults: absent or null.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserSettings {
    /// 1 to 64 characters without spaces; unique.
    pub username: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    #[serde(default)]
    pub name: Option<String>,
    /// E.164 (`+84976535298`); spaces, dots and dashes are removed.
    #[serde(default)]
    pub phone_number: Option<String>,
    #[serde(default)]
    pub phone_number_verified: bool,
    #[serde(default)]
    pub picture: Option<String>,
    /// The organisation's own attributes: names of A-Z a-z 0-9 _ . - (not a standard
    /// claim), string values.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// A user as the admin API shows it (never a password or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UserDocument {
    /// Stable, never reused: the `sub` claim.
    pub id: i64,
    #[serde(flatten)]
    pub settings: UserSettings,
    /// Read-only: whether a password is set.
    pub has_password: bool,
    /// Read-only: disabled accounts cannot sign in (POST …/disable, …/enable).
    pub disabled: bool,
    pub disabled_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Members of a user document that a request may carry back but cannot set.
pub const READ_ONLY: &[&str] = &["id", "has_password", "disabled", "disabled_at", "created_at", "updated_at"];

impl UserSettings {
    pub fn of(user: &User) -> Self {
        Profile::of(user).into()
    }

    /// The profile, validated.
    pub fn profile(self) -> Result<Profile, ChangeError> {
        Ok(Profile::from(self).validate()?)
    }

    /// What an audit event records of a profile (it holds no secret).
    fn audited(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The document's members are the core profile's, one for one.
impl From<Profile> for UserSettings {
    fn from(p: Profile) -> Self {
        Self {
            username: p.username,
            email: p.email,
            email_verified: p.email_verified,
            name: p.name,
            phone_number: p.phone_number,
            phone_number_verified: p.phone_number_verified,
            picture: p.picture,
            attributes: p.attributes,
        }
    }
}

impl From<UserSettings> for Profile {
    fn from(s: UserSettings) -> Self {
        Self {
            username: s.username,
            email: s.email,
            email_verified: s.email_verified,
            name: s.name,
            phone_number: s.phone_number,
            phone_number_verified: s.phone_number_verified,
            picture: s.picture,
            attributes: s.attributes,
        }
    }
}

impl UserDocument {
    pub fn of(user: &User) -> Self {
        Self {
            id: user.id,
            settings: UserSettings::of(user),
            has_password: user.password_hash.is_some(),
            disabled: user.is_disabled(),
            disabled_at: user.disabled_at,
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

/// The ETag of a stored user.
pub fn etag(user: &User) -> String {
    format!("\"u{}-{}\"", user.id, user.revision)
}

/// An argon2id hash of a new password, in the password slots.
pub async fn hash_new_password(passwords: &Passwords, password: String) -> Result<String, ChangeError> {
    validate_new_password(&password).map_err(|e| ChangeError::invalid("password", e.to_string()))?;
    passwords.hash(password).await.map_err(|e| ChangeError::invalid("password", e.to_string()))
}

/// Stores a new user; `password`, when given, is checked and hashed.
pub async fn create(
    store: &dyn Store,
    passwords: &Passwords,
    profile: Profile,
    password: Option<String>,
    who: &Who,
) -> Result<User, ChangeError> {
    let profile = profile.validate_new()?;
    let hash = match password {
        Some(p) => Some(hash_new_password(passwords, p).await?),
        None => None,
    };
    let event = who.event(kind::USER_CREATED).detail(serde_json::json!({
        "changes": audit::changes(&serde_json::json!({}), &UserSettings::from(profile.clone()).audited()),
        "has_password": hash.is_some(),
    }));
    let new_user = profile.into_new_user(hash, who.now);
    let username = new_user.username.clone();
    match store.insert_user(&new_user, &event).await {
        Err(StoreError::Conflict("email")) => {
            Err(ChangeError::Exists("the email address is verified on another account".into()))
        }
        Err(StoreError::Conflict(_)) => Err(ChangeError::Exists(taken(&username))),
        other => other.map_err(ChangeError::Store),
    }
}

/// Replaces the profile of `existing`, if it is still at revision `expected`.
pub async fn update(
    store: &dyn Store,
    existing: &User,
    profile: Profile,
    expected: Option<i64>,
    who: &Who,
) -> Result<User, ChangeError> {
    // A new username is held to the rules of new ones.
    let profile = if profile.username == existing.username { profile.validate()? } else { profile.validate_new()? };
    let (before, after) = (UserSettings::of(existing).audited(), UserSettings::from(profile.clone()).audited());
    let event = who.event(kind::USER_UPDATED).detail(serde_json::json!({ "changes": audit::changes(&before, &after) }));
    let outcome = store.update_user_profile(existing.id, &profile, expected, who.now, &event).await;
    match outcome {
        Err(StoreError::Conflict(_)) => return Err(ChangeError::Exists(taken(&profile.username))),
        other => settled(other)?,
    }
    store.user_by_id(existing.id).await.map_err(ChangeError::Store)?.ok_or(ChangeError::NotFound)
}

/// A username that is taken, or differs from a taken one only in case or width.
fn taken(username: &str) -> String {
    format!("the username {username:?} is taken (usernames differing only in case or width are one)")
}

fn settled(outcome: Result<Updated, StoreError>) -> Result<(), ChangeError> {
    match outcome.map_err(ChangeError::Store)? {
        Updated::Done(_) => Ok(()),
        Updated::Missing => Err(ChangeError::NotFound),
        Updated::Stale => Err(ChangeError::Stale),
    }
}

/// Ends the user's sessions and tokens together with `change` (a new password, a
/// deletion, disabling, or nothing more), in one transaction; their clients get
/// back-channel notices (sent by the running servers).
pub async fn end_sessions(
    store: &dyn Store,
    settings: &crate::Settings,
    user: UserRef,
    change: UserChange,
    who: &Who,
) -> Result<EndedSessions, ChangeError> {
    let event_kind = match change {
        UserChange::None => kind::USER_SESSIONS_REVOKED,
        UserChange::Password { .. } => kind::USER_PASSWORD_CHANGED,
        UserChange::Delete => kind::USER_DELETED,
        UserChange::Disable => kind::USER_DISABLED,
    };
    let keep_until = crate::service::logout::keep_deliveries_until(settings, who.now);
    let mut event = who.event(event_kind);
    if let UserRef::Id(id) = user {
        event.user_id = Some(id);
    }
    store
        .end_user_sessions(user, change, None, who.now, keep_until, &event)
        .await
        .map_err(ChangeError::Store)?
        .ok_or(ChangeError::NotFound)
}

/// Enables a disabled user (an enabled one stays so).
pub async fn enable(store: &dyn Store, id: i64, who: &Who) -> Result<User, ChangeError> {
    let mut event = who.event(kind::USER_ENABLED);
    event.user_id = Some(id);
    settled(store.enable_user(id, who.now, &event).await)?;
    store.user_by_id(id).await.map_err(ChangeError::Store)?.ok_or(ChangeError::NotFound)
}

/// One line of an import: what another system knows of a user, its password hash as
/// that system made it (`khoa_core::hashes`: nothing is hashed at import).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ImportedUser {
    pub username: String,
    /// bcrypt (`$2a$`, `$2b$`, `$2y$`), argon2id or argon2i, PBKDF2-SHA256 (PHC or
    /// Django's `pbkdf2_sha256$…`) or scrypt (PHC). Re-hashed to argon2id at the first
    /// login.
    pub password_hash: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, alias = "phone_number")]
    pub phone: Option<String>,
    #[serde(default, alias = "phone_number_verified")]
    pub phone_verified: bool,
    #[serde(default)]
    pub picture: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// A line of an import that was not imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ImportLine {
    /// 1 for the first line.
    pub line: usize,
    /// The username, when the line had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The member at fault (for a failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub detail: String,
}

/// What an import did: it goes on past bad lines, and a second run of the same file
/// creates nothing (every username exists).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ImportReport {
    pub created: usize,
    /// Lines whose username exists already (not imported again).
    pub existing: Vec<ImportLine>,
    /// Lines that could not be read or break a rule.
    pub failed: Vec<ImportLine>,
    /// Who was created, with the address to verify if it is not verified yet.
    #[serde(skip)]
    pub to_verify: Vec<(i64, String, String)>,
}

/// How many users go to the database in one transaction.
const IMPORT_BATCH: usize = 1000;

/// Imports JSON lines (empty lines are skipped), in batches.
pub async fn import<'a>(
    store: &dyn Store,
    lines: impl Iterator<Item = &'a str>,
    who: &Who,
) -> Result<ImportReport, ChangeError> {
    let mut report = ImportReport::default();
    let mut batch: Vec<(usize, khoa_core::user::NewUser)> = Vec::with_capacity(IMPORT_BATCH);
    for (i, line) in lines.enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        match read_line(line, who.now) {
            Ok(user) => batch.push((line_no, user)),
            Err((username, field, detail)) => {
                report.failed.push(ImportLine { line: line_no, username, field: Some(field), detail })
            }
        }
        if batch.len() == IMPORT_BATCH {
            store_batch(store, &mut batch, &mut report, who).await?;
        }
    }
    store_batch(store, &mut batch, &mut report, who).await?;
    Ok(report)
}

type LineFault = (Option<String>, String, String);

fn read_line(line: &str, now: khoa_core::UnixTime) -> Result<khoa_core::user::NewUser, LineFault> {
    let value: Value = serde_json::from_str(line).map_err(|e| (None, String::new(), format!("not JSON: {e}")))?;
    if !value.is_object() {
        return Err((None, String::new(), "each line must be a JSON object".into()));
    }
    let username = value.get("username").and_then(Value::as_str).map(str::to_string);
    let fault = |field: &str, detail: String| (username.clone(), field.to_string(), detail);
    let read: ImportedUser = super::read_json(value.clone()).map_err(|e| match e {
        ChangeError::Invalid { field, detail } => fault(&field, detail),
        other => fault("", other.to_string()),
    })?;
    khoa_core::hashes::scheme_of(&read.password_hash).map_err(|e| fault("password_hash", e.to_string()))?;
    let profile = Profile {
        username: read.username,
        email: read.email,
        email_verified: read.email_verified,
        name: read.name,
        phone_number: read.phone,
        phone_number_verified: read.phone_verified,
        picture: read.picture,
        attributes: read.attributes,
    }
    .validate_new()
    .map_err(|e| fault(e.field(), e.to_string()))?;
    Ok(profile.into_new_user(Some(read.password_hash), now))
}

async fn store_batch(
    store: &dyn Store,
    batch: &mut Vec<(usize, khoa_core::user::NewUser)>,
    report: &mut ImportReport,
    who: &Who,
) -> Result<(), ChangeError> {
    if batch.is_empty() {
        return Ok(());
    }
    let users: Vec<khoa_core::user::NewUser> = batch.iter().map(|(_, u)| u.clone()).collect();
    let event = who.event(kind::USER_IMPORTED);
    let ids = store.import_users(&users, &event).await.map_err(ChangeError::Store)?;
    for ((line, user), id) in batch.drain(..).zip(ids) {
        match id {
            Some(id) => {
                report.created += 1;
                if let (Some(email), false) = (&user.email, user.email_verified) {
                    report.to_verify.push((id, user.username.clone(), email.clone()));
                }
            }
            None => report.existing.push(ImportLine {
                line,
                username: Some(user.username),
                field: None,
                detail: "the username exists (or one differing only in case or width): not imported again".into(),
            }),
        }
    }
    Ok(())
}

/// One of a person's ways of signing in beyond the password, as administrators see it:
/// never a secret, a code or a key.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MethodDocument {
    pub id: i64,
    /// `totp`, `passkey` or `recovery_code`.
    pub kind: String,
    pub name: Option<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    /// A recovery code's use.
    pub used_at: Option<i64>,
}

/// The user's methods beyond the password.
pub async fn methods(store: &dyn Store, id: i64) -> Result<Vec<MethodDocument>, ChangeError> {
    let credentials = store.credentials(id).await.map_err(ChangeError::Store)?;
    Ok(credentials
        .into_iter()
        .map(|c| MethodDocument {
            id: c.id,
            kind: c.method.as_str().to_string(),
            name: c.name,
            created_at: c.created_at,
            last_used_at: c.last_used_at,
            used_at: c.used_at,
        })
        .collect())
}

/// Removes every second factor and recovery code of a person who lost theirs, so that
/// they sign in with their password again (and set up a new factor, where a policy
/// asks for one); audited. How many were removed.
pub async fn reset_mfa(store: &dyn Store, id: i64, who: &Who) -> Result<u64, ChangeError> {
    store.user_by_id(id).await.map_err(ChangeError::Store)?.ok_or(ChangeError::NotFound)?;
    let mut event = who.event(kind::MFA_RESET);
    event.user_id = Some(id);
    store.reset_credentials(id, &event).await.map_err(ChangeError::Store)
}
