//! khoa's protocol core.
//!
//! Everything here is pure: no HTTP, no SQL, no clock reads (callers pass `now`), no
//! configuration files. The HTTP layer (`khoa-server`) and the storage layer
//! (`khoa-store`) translate their inputs into these types and back.

pub mod account;
pub mod admin;
pub mod audit;
pub mod authn;
pub mod authorize;
pub mod client;
pub mod client_auth;
pub mod clock;
pub mod code;
pub mod discovery;
pub mod forwarded;
pub mod hashes;
pub mod jose;
pub mod keyring;
pub mod logout;
pub mod password;
pub mod pkce;
pub mod random;
pub mod recovery;
pub mod redirect_uri;
pub mod refresh;
pub mod scope;
pub mod sealing;
pub mod secret;
pub mod session;
pub mod tconnect;
pub mod throttle;
pub mod token_error;
pub mod tokens;
pub mod totp;
pub mod user;

/// Seconds since the Unix epoch. Every time in khoa's core is one of these.
pub type UnixTime = i64;
