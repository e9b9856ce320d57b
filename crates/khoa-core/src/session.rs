//! SSO sessions and pending interactions (a request waiting for the user to log in or
//! consent).

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
    /// The browser that opened it, in a few words ([`device_of`]).
    pub device: Option<String>,
    /// The client address it was opened from.
    pub address: Option<String>,
    /// When it was last used to sign in to an application (at most a minute stale).
    pub last_used_at: UnixTime,
}

/// How often a session's `last_used_at` is written at most (seconds).
pub const LAST_USE_RESOLUTION: i64 = 60;

/// A few words naming a browser and its system from a `User-Agent` ("Firefox on
/// Linux"), for a person to recognise their sessions; nothing else of it is kept.
pub fn device_of(user_agent: &str) -> Option<String> {
    let ua = user_agent;
    if ua.trim().is_empty() {
        return None;
    }
    // Order matters: Edge and Opera say Chrome, Chrome says Safari.
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("CriOS/", "Chrome"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .iter()
    .find(|(mark, _)| ua.contains(mark))
    .map(|(_, name)| *name);
    let system = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(mark, _)| ua.contains(mark))
    .map(|(_, name)| *name);
    Some(match (browser, system) {
        (Some(b), Some(s)) => format!("{b} · {s}"),
        (Some(b), None) => b.to_string(),
        (None, Some(s)) => s.to_string(),
        (None, None) => ua.chars().filter(|c| !c.is_control()).take(40).collect(),
    })
}

impl Session {
    pub fn is_active(&self, now: UnixTime) -> bool {
        self.ended_at.is_none() && now < self.expires_at
    }
}

/// What an interaction waits to complete once the user has logged in (and consented).
/// Only the authorization request today, answered by a redirect to the client; a
/// device authorization (RFC 8628), answered by a page of the server's own, will be a
/// variant of its own rather than a request that pretends to have a redirect URI.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pending {
    Authorization(crate::authorize::AuthorizationRequest),
}

impl Pending {
    /// As stored in [`Interaction::request`].
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads what [`Pending::to_json`] wrote, or a bare authorization request (the
    /// form of interactions stored by earlier versions); `None` when it is neither.
    pub fn from_json(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok().or_else(|| serde_json::from_str(text).ok().map(Self::Authorization))
    }
}

/// A pending request parked while the user logs in or consents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub id_hash: String,
    /// Compared with the form's token in constant time.
    pub csrf_token: String,
    /// What waits, serialised ([`Pending::to_json`]).
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
    fn devices_are_named_in_a_few_words() {
        let cases = [
            ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", Some("Firefox · Linux")),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
                Some("Edge · Windows"),
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
                Some("Safari · iOS"),
            ),
            (
                "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36",
                Some("Chrome · Android"),
            ),
            ("okhttp/4.12.0", Some("okhttp/4.12.0")),
            ("   ", None),
        ];
        for (ua, want) in cases {
            assert_eq!(device_of(ua).as_deref(), want, "{ua}");
        }
        assert_eq!(device_of(&"x\u{7}".repeat(100)).map(|d| d.chars().count()), Some(40));
    }

    #[test]
    fn a_pending_request_reads_back_in_both_stored_forms() {
        let client = {
            let mut r = crate::client::ClientRegistration::new("web");
            r.redirect_uris = vec!["https://app.example/cb".into()];
            r.register(0).unwrap().client
        };
        let params = crate::authorize::Params::new(
            [
                ("client_id", "web"),
                ("response_type", "code"),
                ("redirect_uri", "https://app.example/cb"),
                ("scope", "openid"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let request = crate::authorize::validate(&params, Some(&client)).unwrap();
        let pending = Pending::Authorization(request.clone());
        assert!(pending.to_json().starts_with("{\"authorization\":"), "{}", pending.to_json());
        assert_eq!(Pending::from_json(&pending.to_json()), Some(pending.clone()));
        // Stored by an earlier version: the bare request.
        assert_eq!(Pending::from_json(&serde_json::to_string(&request).unwrap()), Some(pending));
        assert_eq!(Pending::from_json("{\"device\":{}}"), None);
        assert_eq!(Pending::from_json("not json"), None);
    }

    #[test]
    fn handles_are_random_and_hashed() {
        let (a, b) = (new_handle(), new_handle());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(handle_hash(&a), handle_hash(&a));
        assert_ne!(handle_hash(&a), a);
    }
}
