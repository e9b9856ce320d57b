//! End users: registration rules and the stored profile (OIDC Core §5.1 claims).

use crate::redirect_uri::validate_link_uri;
use crate::UnixTime;
use serde::Serialize;
use std::collections::BTreeMap;

pub const MAX_USERNAME_LEN: usize = 64;

/// A stored user. `id` is stable and never reused; it is the `sub` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    #[serde(skip_serializing)]
    pub password_hash: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub phone_number: Option<String>,
    pub phone_number_verified: bool,
    pub picture: Option<String>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
    /// Since when the account is disabled: no sign-in, no tokens.
    pub disabled_at: Option<UnixTime>,
    /// The organisation's own key/value attributes (e.g. `student_id`).
    pub attributes: BTreeMap<String, String>,
    /// Raised by the store at every change (the admin API's ETag).
    #[serde(skip)]
    pub revision: i64,
}

impl User {
    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }

    /// OIDC Core §2: the subject identifier (≤ 255 ASCII characters).
    pub fn subject(&self) -> String {
        self.id.to_string()
    }
}

/// A user about to be stored (no id yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub username: String,
    /// A PHC string; empty: no password (the account cannot sign in with one yet).
    pub password_hash: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub phone_number: Option<String>,
    pub phone_number_verified: bool,
    pub picture: Option<String>,
    pub attributes: BTreeMap<String, String>,
    pub created_at: UnixTime,
}

/// What a user is, but for their password: what an operator (or the user) edits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub username: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub phone_number: Option<String>,
    pub phone_number_verified: bool,
    pub picture: Option<String>,
    pub attributes: BTreeMap<String, String>,
}

/// The most custom attributes one user has.
pub const MAX_ATTRIBUTES: usize = 64;
/// Claims khoa releases itself: an attribute cannot take their name.
pub const RESERVED_CLAIMS: &[&str] = &[
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "sid",
    "scope",
    "client_id",
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "preferred_username",
    "profile",
    "picture",
    "website",
    "email",
    "email_verified",
    "gender",
    "birthdate",
    "zoneinfo",
    "locale",
    "phone_number",
    "phone_number_verified",
    "address",
    "updated_at",
];

/// A name an attribute may have: 1 to 64 of `A-Z a-z 0-9 _ . -`, not a claim khoa
/// releases itself.
pub fn is_attribute_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && !RESERVED_CLAIMS.contains(&name)
}

impl Profile {
    /// The profile of a stored user.
    pub fn of(user: &User) -> Self {
        Self {
            username: user.username.clone(),
            email: user.email.clone(),
            email_verified: user.email_verified,
            name: user.name.clone(),
            phone_number: user.phone_number.clone(),
            phone_number_verified: user.phone_number_verified,
            picture: user.picture.clone(),
            attributes: user.attributes.clone(),
        }
    }

    /// Every rule of a profile; the phone number comes back in E.164.
    pub fn validate(mut self) -> Result<Self, UserError> {
        validate_username(&self.username)?;
        if let Some(e) = &self.email {
            validate_email(e)?;
        }
        self.phone_number = self.phone_number.as_deref().map(normalize_phone).transpose()?;
        if let Some(p) = &self.picture {
            validate_link_uri(p).map_err(|e| UserError::Picture(e.to_string()))?;
        }
        if let Some(n) = &self.name {
            if n.trim().is_empty() || n.chars().count() > 200 || n.chars().any(char::is_control) {
                return Err(UserError::Name);
            }
        }
        if self.attributes.len() > MAX_ATTRIBUTES {
            return Err(UserError::TooManyAttributes);
        }
        for (key, value) in &self.attributes {
            if !is_attribute_name(key) {
                return Err(UserError::AttributeName(key.clone()));
            }
            if value.chars().count() > 1024 || value.chars().any(char::is_control) {
                return Err(UserError::AttributeValue(key.clone()));
            }
        }
        Ok(self)
    }

    /// The user to store with this profile and password hash (empty: none).
    pub fn into_new_user(self, password_hash: String, now: UnixTime) -> NewUser {
        NewUser {
            username: self.username,
            password_hash,
            email: self.email,
            email_verified: self.email_verified,
            name: self.name,
            phone_number: self.phone_number,
            phone_number_verified: self.phone_number_verified,
            picture: self.picture,
            attributes: self.attributes,
            created_at: now,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("username must be 1 to {MAX_USERNAME_LEN} characters without spaces or control characters")]
    Username,
    #[error("{0:?} is not an email address")]
    Email(String),
    #[error("{0:?} is not a phone number (E.164, e.g. +84976535298)")]
    Phone(String),
    #[error("invalid picture URL: {0}")]
    Picture(String),
    #[error("name must not be empty and at most 200 characters")]
    Name,
    #[error("at most {MAX_ATTRIBUTES} attributes")]
    TooManyAttributes,
    #[error("attribute name {0:?}: 1 to 64 characters of A-Z a-z 0-9 _ . -, and not a standard claim")]
    AttributeName(String),
    #[error("attribute {0:?}: at most 1024 characters, no control characters")]
    AttributeValue(String),
}

impl UserError {
    /// The member of a user document the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Username => "username",
            Self::Email(_) => "email",
            Self::Phone(_) => "phone_number",
            Self::Picture(_) => "picture",
            Self::Name => "name",
            Self::TooManyAttributes | Self::AttributeName(_) | Self::AttributeValue(_) => "attributes",
        }
    }
}

pub fn validate_username(username: &str) -> Result<(), UserError> {
    let n = username.chars().count();
    if n == 0 || n > MAX_USERNAME_LEN || username.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UserError::Username);
    }
    Ok(())
}

fn validate_email(email: &str) -> Result<(), UserError> {
    let bad = || UserError::Email(email.into());
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || email.len() > 254
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    Ok(())
}

/// E.164: `+` and 8 to 15 digits. Spaces, dots and dashes between digits are removed.
fn normalize_phone(phone: &str) -> Result<String, UserError> {
    let compact: String = phone.chars().filter(|c| !matches!(c, ' ' | '-' | '.')).collect();
    let digits = compact.strip_prefix('+').ok_or_else(|| UserError::Phone(phone.into()))?;
    if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UserError::Phone(phone.into()));
    }
    Ok(compact)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        Profile { username: "2280600348".into(), ..Default::default() }
    }

    #[test]
    fn a_valid_profile_has_its_phone_in_e164() {
        let p = Profile {
            email: Some("a@hutech.edu.vn".into()),
            phone_number: Some("+84 976-535-298".into()),
            name: Some("Nguyễn Văn A".into()),
            ..profile()
        };
        let valid = p.validate().unwrap();
        assert_eq!(valid.phone_number.as_deref(), Some("+84976535298"));
        let user = valid.into_new_user("$argon2id$…".into(), 5);
        assert_eq!((user.created_at, user.password_hash.as_str()), (5, "$argon2id$…"));
    }

    #[test]
    fn refusals() {
        let cases = [
            (Profile { username: "has space".into(), ..profile() }, "username"),
            (Profile { email: Some("not-an-email".into()), ..profile() }, "email"),
            (Profile { phone_number: Some("0976535298".into()), ..profile() }, "phone_number"),
            (Profile { picture: Some("javascript:alert(1)".into()), ..profile() }, "picture"),
            (Profile { name: Some(" ".into()), ..profile() }, "name"),
        ];
        for (p, field) in cases {
            assert_eq!(p.validate().unwrap_err().field(), field);
        }
    }

    #[test]
    fn attributes_have_names_of_their_own() {
        let profile = |key: &str, value: &str| Profile {
            username: "sv01".into(),
            attributes: [(key.to_string(), value.to_string())].into(),
            ..Default::default()
        };
        assert!(profile("student_id", "2280600348").validate().is_ok());
        for key in ["", "has space", "email", "sub", "x".repeat(65).as_str(), "ý"] {
            assert_eq!(profile(key, "v").validate().unwrap_err().field(), "attributes", "{key:?}");
        }
        assert!(matches!(profile("k", "a\nb").validate(), Err(UserError::AttributeValue(_))));
        assert!(matches!(profile("k", &"v".repeat(1025)).validate(), Err(UserError::AttributeValue(_))));
        let many = Profile {
            username: "sv01".into(),
            attributes: (0..65).map(|i| (format!("k{i}"), "v".to_string())).collect(),
            ..Default::default()
        };
        assert_eq!(many.validate().unwrap_err(), UserError::TooManyAttributes);
    }
}
