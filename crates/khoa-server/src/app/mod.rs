//! The application: its state and settings, the clock, metrics, the caches, the
//! signing keys and the background jobs. Nothing here knows HTTP or a protocol flow.

pub(crate) mod caches;
pub(crate) mod cleanup;
pub mod clients;
pub mod clock;
pub mod keys;
pub mod mail;
pub mod metrics;
pub mod passkeys;
pub mod passwords;
pub mod settings;
pub mod state;
pub(crate) mod watcher;
