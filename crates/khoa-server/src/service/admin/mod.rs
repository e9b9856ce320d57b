//! What the admin API and the command line change, each change validated by the core's
//! rules and recorded in the audit trail in its own transaction.

pub mod clients;
pub mod partners;
pub mod users;

use khoa_core::audit::{Actor, Event};
use khoa_core::client::RegistrationError;
use khoa_core::UnixTime;
use khoa_store::StoreError;

/// Who changes something, from where, and when.
#[derive(Debug, Clone)]
pub struct Who {
    pub actor: Actor,
    pub address: Option<String>,
    pub now: UnixTime,
}

impl Who {
    pub fn command_line(now: UnixTime) -> Self {
        Self { actor: Actor::CommandLine, address: None, now }
    }

    pub fn event(&self, kind: &'static str) -> Event {
        Event::new(self.now, kind, self.actor.clone()).from_address(self.address.clone())
    }
}

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// A field breaks a rule: the field (its name in the document) and why.
    #[error("{field}: {detail}")]
    Invalid { field: String, detail: String },
    #[error("not found")]
    NotFound,
    /// The identifier is taken.
    #[error("{0}")]
    Exists(String),
    /// Changed since the revision the caller had (If-Match).
    #[error("the resource changed since it was read")]
    Stale,
    #[error(transparent)]
    Store(StoreError),
}

impl ChangeError {
    pub fn invalid(field: &str, detail: String) -> Self {
        Self::Invalid { field: field.to_string(), detail }
    }
}

/// Reads `T` from a JSON value, naming the member that does not fit, and refusing
/// members `T` does not have (a typo must not pass for a default).
pub fn read_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ChangeError> {
    let mut unknown = Vec::new();
    let mut note = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let ignoring = serde_ignored::Deserializer::new(value, &mut note);
    match serde_path_to_error::deserialize::<_, T>(ignoring) {
        Ok(_) if !unknown.is_empty() => {
            let field = unknown.swap_remove(0);
            Err(ChangeError::invalid(&field, format!("unknown member {field:?}")))
        }
        Ok(value) => Ok(value),
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let message = e.inner().to_string();
            // A missing member is named in the message only.
            let missing = message.strip_prefix("missing field `").and_then(|rest| rest.split('`').next());
            let field = match missing {
                Some(name) if path.is_empty() => name.to_string(),
                Some(name) => format!("{path}.{name}"),
                None => path,
            };
            Err(ChangeError::invalid(&field, message))
        }
    }
}

impl From<RegistrationError> for ChangeError {
    fn from(e: RegistrationError) -> Self {
        Self::invalid(e.field(), e.to_string())
    }
}
