//! Randomness from the operating system's CSPRNG (through aws-lc-rs).

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// `N` random bytes. The system RNG failing is not something a request can cause and
/// nothing sensible can continue without it, so it aborts loudly.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    #[allow(clippy::expect_used)]
    SystemRandom::new().fill(&mut out).expect("operating system random number generator failed");
    out
}

/// A URL-safe random token carrying `N` bytes (8·N bits) of entropy.
pub fn random_token<const N: usize>() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<N>())
}
