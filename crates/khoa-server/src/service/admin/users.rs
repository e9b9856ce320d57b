//! Users as the admin API and the command line change them: one validation (the core's
//! `Profile` and password rules), one representation, an audit event in the
//! transaction of every change.

use super::{ChangeError, Who};
use khoa_core::audit::{self, kind};
use khoa_core::password::{hash_password, validate_new_password, PasswordParams};
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
        let p = Profile::of(user);
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

    /// The profile, validated.
    pub fn profile(self) -> Result<Profile, ChangeError> {
        Ok(Profile {
            username: self.username,
            email: self.email,
            email_verified: self.email_verified,
            name: self.name,
            phone_number: self.phone_number,
            phone_number_verified: self.phone_number_verified,
            picture: self.picture,
            attributes: self.attributes,
        }
        .validate()?)
    }
}

impl UserDocument {
    pub fn of(user: &User) -> Self {
        Self {
            id: user.id,
            settings: UserSettings::of(user),
            has_password: !user.password_hash.is_empty(),
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

fn audited(user: &User) -> Value {
    serde_json::to_value(UserDocument::of(user)).unwrap_or(Value::Null)
}

/// An argon2id hash of a new password, off the async executor.
pub async fn hash_new_password(password: String) -> Result<String, ChangeError> {
    validate_new_password(&password).map_err(|e| ChangeError::invalid("password", e.to_string()))?;
    tokio::task::spawn_blocking(move || hash_password(&password, PasswordParams::default()))
        .await
        .map_err(|e| ChangeError::invalid("password", e.to_string()))?
        .map_err(|e| ChangeError::invalid("password", e.to_string()))
}

/// Stores a new user; `password`, when given, is checked and hashed.
pub async fn create(
    store: &dyn Store,
    profile: Profile,
    password: Option<String>,
    who: &Who,
) -> Result<User, ChangeError> {
    let profile = profile.validate()?;
    let hash = match password {
        Some(p) => hash_new_password(p).await?,
        None => String::new(),
    };
    let new_user = profile.into_new_user(hash, who.now);
    let username = new_user.username.clone();
    let event = who.event(kind::USER_CREATED).detail(serde_json::json!({
        "changes": audit::changes(&serde_json::json!({}), &serde_json::to_value(UserSettings {
            username: new_user.username.clone(),
            email: new_user.email.clone(),
            email_verified: new_user.email_verified,
            name: new_user.name.clone(),
            phone_number: new_user.phone_number.clone(),
            phone_number_verified: new_user.phone_number_verified,
            picture: new_user.picture.clone(),
            attributes: new_user.attributes.clone(),
        }).unwrap_or(Value::Null)),
        "has_password": !new_user.password_hash.is_empty(),
    }));
    match store.insert_user(&new_user, &event).await {
        Err(StoreError::Conflict(_)) => Err(ChangeError::Exists(format!("the username {username:?} is taken"))),
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
    let profile = profile.validate()?;
    let mut after = existing.clone();
    after.username.clone_from(&profile.username);
    after.email.clone_from(&profile.email);
    after.email_verified = profile.email_verified;
    after.name.clone_from(&profile.name);
    after.phone_number.clone_from(&profile.phone_number);
    after.phone_number_verified = profile.phone_number_verified;
    after.picture.clone_from(&profile.picture);
    after.attributes.clone_from(&profile.attributes);
    let event = who
        .event(kind::USER_UPDATED)
        .detail(serde_json::json!({ "changes": audit::changes(&audited(existing), &audited(&after)) }));
    let outcome = store.update_user_profile(existing.id, &profile, expected, who.now, &event).await;
    match outcome {
        Err(StoreError::Conflict(_)) => {
            return Err(ChangeError::Exists(format!("the username {:?} is taken", profile.username)))
        }
        other => settled(other)?,
    }
    store.user_by_id(existing.id).await.map_err(ChangeError::Store)?.ok_or(ChangeError::NotFound)
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
        .end_user_sessions(user, change, who.now, keep_until, &event)
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
