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
    /// The password's hash (a PHC string), kept as the person's password credential;
    /// `None`: no password (a passkey-only account, or one created without).
    #[serde(skip_serializing)]
    pub password_hash: Option<String>,
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
    /// A PHC string; `None`: no password (the account cannot sign in with one yet).
    pub password_hash: Option<String>,
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

    /// [`Profile::validate`] for a new username (an account created, imported,
    /// registered, or renamed): a username with `@` must be the account's own verified
    /// address, so that no account can take a name that reads as somebody's address.
    pub fn validate_new(self) -> Result<Self, UserError> {
        let valid = self.validate()?;
        if valid.username.contains('@') {
            let own = valid.email.as_deref().is_some_and(|e| username_key(e) == username_key(&valid.username));
            if !(own && valid.email_verified) {
                return Err(UserError::UsernameAddress);
            }
        }
        Ok(valid)
    }

    /// The user to store with this profile and password hash, if any.
    pub fn into_new_user(self, password_hash: Option<String>, now: UnixTime) -> NewUser {
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
    /// An invisible character: format (Cf), bidirectional control or default-ignorable.
    #[error("username must not contain invisible or direction-changing characters (U+{0:04X})")]
    UsernameInvisible(u32),
    #[error("username must be written in one script (it mixes {0}), so that it cannot pass for another")]
    UsernameMixedScripts(String),
    #[error("a username with @ must be the account's own verified email address")]
    UsernameAddress,
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
            Self::Username | Self::UsernameInvisible(_) | Self::UsernameMixedScripts(_) | Self::UsernameAddress => {
                "username"
            }
            Self::Email(_) => "email",
            Self::Phone(_) => "phone_number",
            Self::Picture(_) => "picture",
            Self::Name => "name",
            Self::TooManyAttributes | Self::AttributeName(_) | Self::AttributeValue(_) => "attributes",
        }
    }
}

/// A username's rules: 1 to 64 characters; no white space, control, format (Cf),
/// bidirectional-control or other default-ignorable character (nothing invisible that
/// could make `alice` and `alice` + U+200B two accounts, or reverse what is shown); and
/// one script only (UTS #39 single-script, Han with kana and Hangul counted as one,
/// common characters such as digits, `.`, `_` and `-` going with any), so that
/// `аlice` with a Cyrillic а is refused beside `alice`. Case and compatibility forms
/// are not refused but share one [`username_key`].
pub fn validate_username(username: &str) -> Result<(), UserError> {
    use unicode_security::MixedScript;
    let n = username.chars().count();
    if n == 0 || n > MAX_USERNAME_LEN || username.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UserError::Username);
    }
    if let Some(c) = username.chars().find(|c| is_invisible(*c)) {
        return Err(UserError::UsernameInvisible(c as u32));
    }
    if !username.is_single_script() {
        let scripts: std::collections::BTreeSet<String> = username
            .chars()
            .filter_map(|c| {
                let set = unicode_security::mixed_script::AugmentedScriptSet::for_char(c);
                (!set.is_all()).then(|| set.to_string())
            })
            .collect();
        return Err(UserError::UsernameMixedScripts(scripts.into_iter().collect::<Vec<_>>().join(", ")));
    }
    Ok(())
}

/// Format characters (Cf: zero-width spaces and joiners, bidirectional controls, the
/// byte-order mark, tags…) and the other default-ignorable code points (Unicode's
/// DerivedCoreProperties: combining grapheme joiner, Hangul fillers, variation
/// selectors, Mongolian and Khmer invisible marks).
fn is_invisible(c: char) -> bool {
    use unicode_properties::general_category::{GeneralCategory, UnicodeGeneralCategory};
    c.general_category() == GeneralCategory::Format
        || matches!(
            c as u32,
            0x034F | 0x115F..=0x1160 | 0x17B4..=0x17B5 | 0x180B..=0x180F | 0x3164 | 0xFE00..=0xFE0F | 0xFFA0
                | 0xFFF0..=0xFFF8 | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF
        )
}

/// The key usernames are unique by: NFKC, then case folded (Unicode lower case, with
/// `ß` as `ss` and a final `ς` as `σ`), then NFKC again, so that `Alice`, `ALICE` and
/// `ａｌｉｃｅ` (full width) are all `alice`. The store keeps it beside the username, in a
/// unique index, on both backends.
pub fn username_key(username: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let folded: String = username
        .nfkc()
        .flat_map(char::to_lowercase)
        .flat_map(|c| match c {
            'ß' => "ss".chars().collect::<Vec<_>>(),
            'ς' => vec!['σ'],
            c => vec![c],
        })
        .collect();
    folded.nfkc().collect()
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
        let user = valid.into_new_user(Some("$argon2id$…".into()), 5);
        assert_eq!((user.created_at, user.password_hash.as_deref()), (5, Some("$argon2id$…")));
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

    /// The review's look-alikes of `alice`: each is refused, or shares alice's key.
    #[test]
    fn look_alike_usernames_are_refused_or_share_a_key() {
        let same_key = ["alice", "Alice", "ALICE", "ａｌｉｃｅ", "ＡＬＩＣＥ", "aLiCe"];
        for name in same_key {
            assert_eq!(validate_username(name), Ok(()), "{name}");
            assert_eq!(username_key(name), "alice", "{name}");
        }
        assert_eq!(username_key("STRASSE"), username_key("straße"));
        assert_eq!(username_key("ΣΟΦΟΣ"), username_key("σοφος"));
        assert_eq!(username_key("σοφος"), username_key("σοφοσ"));
        assert_eq!(username_key("Nguyễn.Văn"), username_key("nguyễn.văn"), "precomposed or not");
        assert_eq!(username_key("Nguye\u{302}\u{303}n"), username_key("nguyễn"));
        let refused = [
            ("\u{430}lice", "mixed"),         // Cyrillic а
            ("alice\u{200B}", "invisible"),   // zero-width space
            ("al\u{202E}ecila", "invisible"), // right-to-left override
            ("ali\u{200D}ce", "invisible"),
            ("\u{FEFF}alice", "invisible"),
            ("alice\u{2066}", "invisible"),
            ("alic\u{34F}e", "invisible"), // combining grapheme joiner
            ("alice\u{FE0F}", "invisible"),
            ("al\u{AD}ice", "invisible"), // soft hyphen
            ("paypal\u{3B1}", "mixed"),   // Greek α
        ];
        assert_eq!(
            validate_username("\u{430}lice").unwrap_err().to_string(),
            "username must be written in one script (it mixes Cyrillic, Latin), so that it cannot pass for another"
        );
        for (name, why) in refused {
            let err = validate_username(name).unwrap_err();
            match why {
                "mixed" => assert!(matches!(err, UserError::UsernameMixedScripts(_)), "{name:?}: {err}"),
                _ => assert!(matches!(err, UserError::UsernameInvisible(_)), "{name:?}: {err}"),
            }
            assert_eq!(err.field(), "username");
        }
        // One script at a time, with common characters, is fine.
        for name in ["nguyễn.văn_a-2", "иван", "山田太郎", "やまだ", "2280600348", "a.b-c_d"] {
            assert_eq!(validate_username(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn a_username_with_at_is_the_accounts_own_verified_address() {
        let p = |username: &str, email: Option<&str>, verified: bool| Profile {
            username: username.into(),
            email: email.map(str::to_string),
            email_verified: verified,
            ..Default::default()
        };
        assert!(p("alice@victim.test", Some("alice@victim.test"), true).validate_new().is_ok());
        assert!(p("Alice@Victim.test", Some("alice@victim.test"), true).validate_new().is_ok());
        for (profile, case) in [
            (p("alice@victim.test", None, false), "no address"),
            (p("alice@victim.test", Some("alice@victim.test"), false), "not verified"),
            (p("alice@victim.test", Some("mallory@evil.test"), true), "another address"),
        ] {
            assert_eq!(profile.validate_new().unwrap_err(), UserError::UsernameAddress, "{case}");
        }
        // An existing account's other changes are not held to it.
        assert!(p("alice@victim.test", None, false).validate().is_ok());
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
