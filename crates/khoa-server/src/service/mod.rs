//! The protocol services the adapters call: client authentication, the grants and the
//! tokens they issue, the authorization flow and its interactions, logout and its
//! back-channel deliveries. Decisions come from `khoa_core`; answers are rendered by
//! the `http` layer.

pub mod account;
pub mod admin;
pub(crate) mod backchannel;
pub(crate) mod client_authn;
pub(crate) mod flow;
pub(crate) mod grants;
pub(crate) mod interaction;
pub(crate) mod issue;
pub mod logout;
pub(crate) mod passkeys;
pub(crate) mod password_login;
pub(crate) mod signin;
pub(crate) mod tokens;
