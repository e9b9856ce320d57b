//! JOSE: signing keys (RFC 7518 §3), their public JWKs (RFC 7517) and thumbprint key
//! identifiers (RFC 7638). All cryptography is aws-lc-rs.

mod jwk;
pub mod jwt;
mod keys;

pub use jwk::{Jwk, JwkSet};
pub use keys::{KeyError, SigningAlgorithm, SigningKey};
