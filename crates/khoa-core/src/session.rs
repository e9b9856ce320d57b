//! SSO sessions and pending interactions (an authorization request waiting for the
//! user to log in or consent).

use crate::UnixTime;
use aws_lc_rs::digest::{digest, SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Handles given to browsers (session cookie, interaction id) and clients (codes) are
/// random 256-bit values; only their SHA-256 is stored, so a copy of the database
/// does not let anyone impersonate a browser or redeem a code.
pub fn handle_hash(handle: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha256(handle.as_bytes()))
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// A new random handle (256 bits, base64url).
pub fn new_handle() -> String {
    crate::random::random_token::<32>()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 of the cookie value.
    pub id_hash: String,
    /// The public session id: the `sid` claim (OIDC Front/Back-Channel Logout).
    pub sid: String,
    pub user_id: i64,
    pub auth_time: UnixTime,
    /// Authentication methods (RFC 8176), e.g. `pwd`.
    pub amr: Vec<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub ended_at: Option<UnixTime>,
}

impl Session {
    pub fn is_active(&self, now: UnixTime) -> bool {
        self.ended_at.is_none() && now < self.expires_at
    }
}

/// An authorization request parked while the user logs in or consents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub id_hash: String,
    /// Compared with the form's token in constant time.
    pub csrf_token: String,
    /// The validated request, serialised (see `authorize::AuthorizationRequest`).
    pub request: String,
    /// Set once the user has logged in during this interaction.
    pub sid: Option<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_random_and_hashed() {
        let (a, b) = (new_handle(), new_handle());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(handle_hash(&a), handle_hash(&a));
        assert_ne!(handle_hash(&a), a);
    }
}
