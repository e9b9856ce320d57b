//! The audit trail: who changed what, and the security events, as records that never
//! hold a secret (the changes are taken from representations without secrets).

use crate::UnixTime;
use serde_json::{Map, Value};
use std::fmt;

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// `khoa …` on the database host.
    CommandLine,
    /// A client of the admin API, by its client_id.
    AdminClient(String),
    /// A signed-in user, by id.
    User(i64),
    /// A client at the token endpoint, by its client_id.
    Client(String),
    /// Someone not (yet) authenticated, such as a failed login.
    Anonymous,
    /// khoa itself (key rotation by schedule, cleanup).
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CommandLine => f.write_str("command_line"),
            Self::AdminClient(id) => write!(f, "admin_client:{id}"),
            Self::User(id) => write!(f, "user:{id}"),
            Self::Client(id) => write!(f, "client:{id}"),
            Self::Anonymous => f.write_str("anonymous"),
            Self::System => f.write_str("system"),
        }
    }
}

/// Event types (`type` of a record).
pub mod kind {
    pub const CLIENT_CREATED: &str = "client.created";
    pub const CLIENT_UPDATED: &str = "client.updated";
    pub const CLIENT_DELETED: &str = "client.deleted";
    pub const CLIENT_SECRET_ROTATED: &str = "client.secret_rotated";
    pub const USER_CREATED: &str = "user.created";
    pub const USER_UPDATED: &str = "user.updated";
    pub const USER_DELETED: &str = "user.deleted";
    pub const USER_DISABLED: &str = "user.disabled";
    pub const USER_ENABLED: &str = "user.enabled";
    pub const USER_PASSWORD_CHANGED: &str = "user.password_changed";
    pub const USER_SESSIONS_REVOKED: &str = "user.sessions_revoked";
    pub const USER_IMPORTED: &str = "user.imported";
    /// An imported password hash replaced by argon2id at the first login it verified.
    pub const USER_PASSWORD_UPGRADED: &str = "user.password_upgraded";
    pub const KEY_CREATED: &str = "key.created";
    pub const KEY_ROTATED: &str = "key.rotated";
    pub const PARTNER_CREATED: &str = "partner.created";
    pub const PARTNER_DELETED: &str = "partner.deleted";
    pub const BACKCHANNEL_RETRIED: &str = "backchannel.retried";
    pub const LOGIN_SUCCEEDED: &str = "login.succeeded";
    pub const LOGIN_FAILED: &str = "login.failed";
    pub const LOGIN_THROTTLED: &str = "login.throttled";
    pub const LOGIN_DISABLED: &str = "login.refused_disabled";
    /// One factor accepted, another asked for (`crate::authn`): not signed in yet.
    pub const LOGIN_STEP: &str = "login.step";
    /// A sign-in path that cannot give what the person's policy requires (the
    /// TCONNECT password API for someone who needs two factors).
    pub const LOGIN_REFUSED_POLICY: &str = "login.refused_policy";
    /// A recovery code spent at sign-in.
    pub const RECOVERY_CODE_USED: &str = "login.recovery_code_used";
    /// An authenticator app or a passkey added to an account.
    pub const CREDENTIAL_ADDED: &str = "user.credential_added";
    pub const CREDENTIAL_REMOVED: &str = "user.credential_removed";
    pub const CREDENTIAL_RENAMED: &str = "user.credential_renamed";
    /// A new set of recovery codes (the old set void).
    pub const RECOVERY_CODES_CREATED: &str = "user.recovery_codes_created";
    /// An administrator removed every second factor of a person who lost theirs.
    pub const MFA_RESET: &str = "user.mfa_reset";
    pub const LOGOUT: &str = "logout";
    /// A reset link asked for: `user_id` set only when an account matched.
    pub const PASSWORD_RESET_REQUESTED: &str = "user.password_reset_requested";
    /// A password set with a reset link: every session ended, every token revoked.
    pub const PASSWORD_RESET: &str = "user.password_reset";
    pub const EMAIL_VERIFICATION_SENT: &str = "user.email_verification_sent";
    pub const EMAIL_VERIFIED: &str = "user.email_verified";
    /// A change of address asked for on the account page: the old address was told.
    pub const EMAIL_CHANGE_NOTICE_SENT: &str = "user.email_change_notice_sent";
    /// The old address said "it was not me": the change undone, every session ended.
    pub const EMAIL_CHANGE_REPORTED: &str = "user.email_change_reported";
    /// An account created by its owner (self-registration), once their address verified.
    pub const USER_REGISTERED: &str = "user.registered";
    pub const PROFILE_UPDATED: &str = "user.profile_updated";
    /// A user took back an application's access: its consent and tokens.
    pub const CONSENT_REVOKED: &str = "consent.revoked";
    /// A user ended one of their sessions from the account page.
    pub const SESSION_ENDED: &str = "session.ended";
    /// A spent authorization code presented again (RFC 6749 §4.1.2): its tokens revoked.
    pub const CODE_REPLAYED: &str = "code.replayed";
    /// A rotated refresh token presented again (RFC 9700 §4.14.2): its family revoked.
    pub const REFRESH_TOKEN_REUSED: &str = "refresh_token.reused";
}

/// One event, as the store writes it in the transaction of what it records.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at: UnixTime,
    pub kind: &'static str,
    pub actor: Actor,
    /// The client concerned (the one changed, or the one a user signed in to).
    pub client_id: Option<String>,
    pub user_id: Option<i64>,
    /// The address the request came from, when there was a request.
    pub address: Option<String>,
    /// A JSON object: for a change, `{"changes": {field: {"before", "after"}}}`.
    pub detail: Value,
}

impl Event {
    pub fn new(at: UnixTime, kind: &'static str, actor: Actor) -> Self {
        Self { at, kind, actor, client_id: None, user_id: None, address: None, detail: Value::Object(Map::new()) }
    }

    pub fn client(mut self, client_id: &str) -> Self {
        self.client_id = Some(client_id.to_string());
        self
    }

    pub fn from_address(mut self, address: Option<String>) -> Self {
        self.address = address;
        self
    }

    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
}

/// The fields that differ between two representations (JSON objects without secrets),
/// each with its value before and after; a field only in one side has `null` on the
/// other. Both sides not objects: the whole values.
pub fn changes(before: &Value, after: &Value) -> Value {
    let (Value::Object(b), Value::Object(a)) = (before, after) else {
        return serde_json::json!({ "before": before, "after": after });
    };
    let mut out = Map::new();
    let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    for key in keys {
        let (old, new) = (b.get(key).unwrap_or(&Value::Null), a.get(key).unwrap_or(&Value::Null));
        if old != new {
            out.insert(key.clone(), serde_json::json!({ "before": old, "after": new }));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_name_the_fields_that_differ() {
        let before = json!({"client_name": "A", "redirect_uris": ["https://a/cb"], "skip_consent": false, "gone": 1});
        let after = json!({"client_name": "B", "redirect_uris": ["https://a/cb"], "skip_consent": true, "new": "x"});
        assert_eq!(
            changes(&before, &after),
            json!({
                "client_name": {"before": "A", "after": "B"},
                "gone": {"before": 1, "after": null},
                "new": {"before": null, "after": "x"},
                "skip_consent": {"before": false, "after": true},
            })
        );
        assert_eq!(changes(&before, &before), json!({}));
    }

    #[test]
    fn actors_are_written_as_text() {
        assert_eq!(Actor::CommandLine.to_string(), "command_line");
        assert_eq!(Actor::AdminClient("ops".into()).to_string(), "admin_client:ops");
        assert_eq!(Actor::User(7).to_string(), "user:7");
    }
}
