//! Who may use the admin API: a live access token that khoa issued to a client by
//! client_credentials, whose scope grants the access asked for (RFC 6750 §3.1).

use crate::scope::{ScopeSet, ADMIN, ADMIN_READ};

/// What a request does to the admin API's resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// GET and HEAD.
    Read,
    /// Every other method.
    Write,
}

impl Access {
    pub fn of_method(method: &str) -> Self {
        match method {
            "GET" | "HEAD" => Self::Read,
            _ => Self::Write,
        }
    }
}

/// Why a request is refused, as RFC 6750 §3.1 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// No bearer token: 401 with no error code (RFC 6750 §3.1).
    NoToken,
    /// Unknown, expired, revoked, not ours, issued for a user, or its client no longer
    /// holds the scope: 401 `invalid_token`.
    InvalidToken,
    /// A live admin token whose scope does not reach: 403 `insufficient_scope`.
    InsufficientScope,
}

/// What the admin API knows of the token presented.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    /// The token was found, is live, and was issued by client_credentials (no user).
    pub live_client_token: bool,
    /// The token's scope.
    pub scope: &'a ScopeSet,
    /// The scopes its client is registered with now (`None`: the client is gone).
    pub client_scopes: Option<&'a [String]>,
}

/// The scope each access needs: `khoa:admin` for everything, `khoa:admin.read` for reads.
fn grants(scope: &str, access: Access) -> bool {
    scope == ADMIN || (scope == ADMIN_READ && access == Access::Read)
}

/// The one admin decision. A scope counts only while the client still holds it, so an
/// operator who takes `khoa:admin` from a client ends its tokens' power at once.
pub fn permit(presented: Option<Presented<'_>>, access: Access) -> Result<(), Denial> {
    let Some(p) = presented else { return Err(Denial::NoToken) };
    let Some(client_scopes) = p.client_scopes.filter(|_| p.live_client_token) else {
        return Err(Denial::InvalidToken);
    };
    let held = |s: &str| client_scopes.iter().any(|c| c == s);
    let admin_scopes: Vec<&str> = p.scope.iter().filter(|s| s.starts_with(crate::scope::RESERVED_PREFIX)).collect();
    if admin_scopes.is_empty() || !admin_scopes.iter().all(|s| held(s)) {
        // Not an admin token at all, or one whose grant was withdrawn.
        return Err(if admin_scopes.is_empty() { Denial::InsufficientScope } else { Denial::InvalidToken });
    }
    if admin_scopes.iter().any(|s| grants(s, access)) {
        Ok(())
    } else {
        Err(Denial::InsufficientScope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decision_table() {
        let admin = ScopeSet::parse("khoa:admin").unwrap();
        let read = ScopeSet::parse("khoa:admin.read").unwrap();
        let other = ScopeSet::parse("api:read").unwrap();
        let both = ["khoa:admin".to_string(), "khoa:admin.read".to_string()];
        let read_only = ["khoa:admin.read".to_string()];
        let none = ["api:read".to_string()];
        fn p<'a>(live: bool, scope: &'a ScopeSet, client: Option<&'a [String]>) -> Option<Presented<'a>> {
            Some(Presented { live_client_token: live, scope, client_scopes: client })
        }
        let (both, read_only, none) = (&both[..], &read_only[..], &none[..]);
        use Access::*;
        let cases: Vec<(Option<Presented>, Access, Result<(), Denial>)> = vec![
            (None, Read, Err(Denial::NoToken)),
            (None, Write, Err(Denial::NoToken)),
            (p(false, &admin, Some(both)), Read, Err(Denial::InvalidToken)),
            (p(true, &admin, None), Read, Err(Denial::InvalidToken)),
            (p(true, &admin, Some(both)), Read, Ok(())),
            (p(true, &admin, Some(both)), Write, Ok(())),
            (p(true, &read, Some(both)), Read, Ok(())),
            (p(true, &read, Some(both)), Write, Err(Denial::InsufficientScope)),
            (p(true, &read, Some(read_only)), Read, Ok(())),
            // khoa:admin taken from the client after its token was issued.
            (p(true, &admin, Some(read_only)), Read, Err(Denial::InvalidToken)),
            (p(true, &admin, Some(none)), Write, Err(Denial::InvalidToken)),
            (p(true, &other, Some(none)), Read, Err(Denial::InsufficientScope)),
        ];
        for (i, (presented, access, expected)) in cases.into_iter().enumerate() {
            assert_eq!(permit(presented, access), expected, "case {i}");
        }
    }

    #[test]
    fn methods() {
        assert_eq!(Access::of_method("GET"), Access::Read);
        assert_eq!(Access::of_method("HEAD"), Access::Read);
        for m in ["POST", "PUT", "PATCH", "DELETE"] {
            assert_eq!(Access::of_method(m), Access::Write);
        }
    }
}
