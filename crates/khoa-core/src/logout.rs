//! Logout: back-channel logout tokens (OIDC Back-Channel Logout 1.0 §2.4), the
//! delivery schedule of the outbox, and front-channel URLs (Front-Channel Logout 1.0 §2).

use crate::UnixTime;
use serde::{Deserialize, Serialize};

/// §2.4: the `typ` header of logout tokens.
pub const LOGOUT_TOKEN_TYP: &str = "logout+jwt";
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Logout tokens expire this long after they are issued (at most two minutes).
pub const LOGOUT_TOKEN_LIFETIME: i64 = 120;

/// §2.4 claims; never a `nonce` (§2.4: "MUST NOT contain a nonce Claim").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: UnixTime,
    pub exp: UnixTime,
    pub jti: String,
    pub events: serde_json::Value,
    pub sid: String,
}

impl LogoutTokenClaims {
    pub fn new(iss: &str, sub: &str, aud: &str, sid: &str, now: UnixTime) -> Self {
        Self {
            iss: iss.to_string(),
            sub: sub.to_string(),
            aud: aud.to_string(),
            iat: now,
            exp: now + LOGOUT_TOKEN_LIFETIME,
            jti: crate::random::random_token::<16>(),
            events: serde_json::json!({ BACKCHANNEL_EVENT: {} }),
            sid: sid.to_string(),
        }
    }
}

/// How back-channel notifications are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Delay before the second attempt; doubled for each further one.
    pub base_delay: i64,
    pub max_delay: i64,
    pub max_attempts: i64,
    /// No attempt later than this after the logout.
    pub horizon: i64,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self { base_delay: 5, max_delay: 3600, max_attempts: 30, horizon: 86_400 }
    }
}

/// What one attempt's answer means (§2.8: 200 or 204 is success; 400 is a refusal that
/// retrying cannot fix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    Delivered,
    Permanent,
    Retry,
}

pub fn classify(status: Option<u16>) -> AttemptResult {
    match status {
        Some(200 | 204) => AttemptResult::Delivered,
        Some(400) => AttemptResult::Permanent,
        _ => AttemptResult::Retry,
    }
}

impl DeliveryPolicy {
    /// When to try again after `attempts` failed attempts of a notification created
    /// at `created_at`; `None` when it is given up. `jitter` in [0, 1) spreads retries
    /// by up to a quarter of the delay.
    pub fn next_attempt(&self, attempts: i64, created_at: UnixTime, now: UnixTime, jitter: f64) -> Option<UnixTime> {
        if attempts >= self.max_attempts {
            return None;
        }
        let exponent = (attempts - 1).clamp(0, 30) as u32;
        let delay = self.base_delay.saturating_mul(1i64 << exponent).min(self.max_delay);
        let jittered = delay + ((delay as f64) * 0.25 * jitter.clamp(0.0, 1.0)) as i64;
        let at = now + jittered.max(1);
        (at <= created_at + self.horizon).then_some(at)
    }
}

/// Front-Channel Logout §2: the RP's URI with `iss` and `sid` added to its query.
pub fn frontchannel_url(uri: &str, issuer: &str, sid: &str) -> String {
    crate::authorize::redirect_with(uri, &[("iss", issuer), ("sid", sid)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logout_token_claims() {
        let c = LogoutTokenClaims::new("https://sso.example.vn", "7", "portal", "sid-1", 1000);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["events"], serde_json::json!({"http://schemas.openid.net/event/backchannel-logout": {}}));
        assert!(v.get("nonce").is_none());
        assert!(c.exp - c.iat <= 120);
        assert_ne!(c.jti, LogoutTokenClaims::new("i", "s", "a", "x", 0).jti, "a fresh jti each time");
    }

    #[test]
    fn outcomes() {
        assert_eq!(classify(Some(200)), AttemptResult::Delivered);
        assert_eq!(classify(Some(204)), AttemptResult::Delivered);
        assert_eq!(classify(Some(400)), AttemptResult::Permanent);
        for s in [Some(500), Some(503), Some(404), Some(302), Some(201), None] {
            assert_eq!(classify(s), AttemptResult::Retry, "{s:?}");
        }
    }

    #[test]
    fn backoff_with_jitter_attempts_and_horizon() {
        let p = DeliveryPolicy { base_delay: 5, max_delay: 60, max_attempts: 6, horizon: 200 };
        assert_eq!(p.next_attempt(1, 0, 10, 0.0), Some(15));
        assert_eq!(p.next_attempt(2, 0, 10, 0.0), Some(20));
        assert_eq!(p.next_attempt(3, 0, 10, 0.0), Some(30));
        assert_eq!(p.next_attempt(3, 0, 10, 0.99), Some(34), "jitter adds up to a quarter");
        assert_eq!(p.next_attempt(5, 0, 10, 0.0), Some(70), "capped at max_delay");
        assert_eq!(p.next_attempt(6, 0, 10, 0.0), None, "attempts exhausted");
        assert_eq!(p.next_attempt(2, 0, 195, 0.0), None, "beyond the horizon");
    }

    #[test]
    fn frontchannel_query() {
        assert_eq!(
            frontchannel_url("https://rp.example/fc?x=1", "https://sso.example.vn", "s 1"),
            "https://rp.example/fc?x=1&iss=https%3A%2F%2Fsso.example.vn&sid=s+1"
        );
    }
}
