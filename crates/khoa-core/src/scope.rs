//! Scopes (RFC 6749 §3.3): space-delimited, case-sensitive tokens; order is irrelevant.

use std::collections::BTreeSet;

pub const OPENID: &str = "openid";
pub const OFFLINE_ACCESS: &str = "offline_access";
/// The scopes a client gets when none are given at registration.
pub const DEFAULT_CLIENT_SCOPES: &[&str] = &["openid", "profile", "email", "phone", "offline_access"];
/// OpenID Connect Core §5.4 scopes khoa knows claims for, plus `offline_access` (§11).
pub const STANDARD_SCOPES: &[&str] = &["openid", "profile", "email", "phone", "offline_access"];
/// The admin API's scopes: everything, and reading only. Granted by client_credentials
/// alone, never at the authorization endpoint.
pub const ADMIN: &str = "khoa:admin";
pub const ADMIN_READ: &str = "khoa:admin.read";
pub const ADMIN_SCOPES: &[&str] = &[ADMIN, ADMIN_READ];
/// Scopes beginning with this are khoa's own: only [`ADMIN_SCOPES`] exist.
pub const RESERVED_PREFIX: &str = "khoa:";

/// Whether `scope` is one of khoa's own (reserved) scopes.
pub fn is_reserved(scope: &str) -> bool {
    scope.starts_with(RESERVED_PREFIX)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid scope token {0:?}: scopes are printable ASCII without spaces, quotes or backslashes")]
pub struct ScopeError(pub String);

/// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// A set of scopes, kept sorted so that comparison ignores order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(BTreeSet<String>);

impl ScopeSet {
    /// Parses a space-delimited list; repeated spaces and duplicates are tolerated.
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        let mut set = BTreeSet::new();
        for token in s.split(' ').filter(|t| !t.is_empty()) {
            if !is_scope_token(token) {
                return Err(ScopeError(token.to_string()));
            }
            set.insert(token.to_string());
        }
        Ok(Self(set))
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }
}

impl std::fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.iter().map(String::as_str).collect::<Vec<_>>().join(" "))
    }
}

/// Serialised as the space-delimited string (RFC 6749 §3.3).
impl serde::Serialize for ScopeSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for ScopeSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ScopeSet::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl FromIterator<String> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_duplicates_do_not_matter() {
        let a = ScopeSet::parse("openid  email profile").unwrap();
        let b = ScopeSet::parse("profile openid email email").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "email openid profile");
        assert!(ScopeSet::parse("openid").unwrap().is_subset(&a));
    }

    #[test]
    fn rfc6749_character_set() {
        assert!(ScopeSet::parse("read:all api://x").is_ok());
        assert_eq!(ScopeSet::parse("a\"b"), Err(ScopeError("a\"b".into())));
        assert!(ScopeSet::parse("a\\b").is_err());
        assert!(ScopeSet::parse("ä").is_err());
        assert!(ScopeSet::parse("tab\there").is_err());
    }
}
