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

impl From<RegistrationError> for ChangeError {
    fn from(e: RegistrationError) -> Self {
        Self::invalid(e.field(), e.to_string())
    }
}
