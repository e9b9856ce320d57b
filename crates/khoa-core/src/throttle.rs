//! Throttling of password logins and of failed client authentications.
//!
//! A [`ThrottlePolicy`] counts attempts under one key: after `free_failures` of them
//! within `window`, each further one must wait a doubling period, during which attempts
//! under that key are refused (429 with Retry-After) without the password or secret
//! being checked at all.
//!
//! Logins reserve their attempt before the password is verified: the store counts it
//! in one conditional write while the key is under its limit (and refuses it
//! otherwise), so a burst of concurrent attempts can never have more passwords checked
//! than the free failures allow. A successful login then gives its reservation back
//! ([`OnSuccess`]).
//!
//! [`LoginThrottle`] decides which keys an attempt counts under (docs/security.md has
//! the policy and its numbers):
//! - the account at one client address (tight): what stops guessing from one place;
//! - the client address across all accounts (far looser, since a campus or an office
//!   shares one address): what catches spraying many accounts from one place;
//! - the account across all addresses (a short delay, capped low): what slows an
//!   attack on one account spread over many addresses, without ever locking the owner
//!   out for longer than that cap;
//! - a browser that has signed in to the account before (its device cookie) counts
//!   only under its own key: neither a locked address nor an attacked account stops it.

use crate::UnixTime;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Attempts (failures) allowed before any waiting period.
    pub free_failures: i64,
    /// The first waiting period (seconds); doubled with each further failure.
    pub base_delay: i64,
    /// The longest waiting period (seconds).
    pub max_delay: i64,
    /// Failures older than this are forgotten (seconds).
    pub window: i64,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self { free_failures: 5, base_delay: 1, max_delay: 900, window: 3600 }
    }
}

impl ThrottlePolicy {
    /// When the next attempt is allowed after the `failures`-th consecutive failure at
    /// `now`: at once while `failures < free_failures`, then after `base_delay`,
    /// doubling per further failure, at most `max_delay`.
    pub fn blocked_until(&self, failures: i64, now: UnixTime) -> UnixTime {
        if failures < self.free_failures {
            return now;
        }
        let exponent = (failures - self.free_failures).min(30) as u32;
        now + self.base_delay.saturating_mul(1i64 << exponent).min(self.max_delay)
    }
}

/// What a successful login does to the attempt it reserved under a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSuccess {
    /// Forget the key's failures (the account at that address, or that device).
    Forget,
    /// Give back this one attempt, keeping the failures of others.
    Refund,
}

/// One key an attempt is counted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleKey {
    pub key: String,
    pub policy: ThrottlePolicy,
    pub on_success: OnSuccess,
}

/// The answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Counted under every key: the password may be checked.
    Admitted,
    /// A key is over its limit until `until`; nothing was counted.
    Blocked { until: UnixTime },
}

/// Where a login attempt comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOrigin<'a> {
    /// A browser at a client address; `device` is the id of its device cookie when
    /// that cookie proves an earlier sign-in to this very account.
    Browser { address: IpAddr, device: Option<&'a str> },
    /// A TCONNECT partner's server, on behalf of its users: the partner is the address.
    Partner { code: &'a str },
}

/// The login throttling policies (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginThrottle {
    /// One account at one address, or one device.
    pub account_at_address: ThrottlePolicy,
    /// One address, every account.
    pub address: ThrottlePolicy,
    /// One account, every address but known devices.
    pub account: ThrottlePolicy,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self {
            account_at_address: ThrottlePolicy::default(),
            address: ThrottlePolicy { free_failures: 100, base_delay: 1, max_delay: 900, window: 3600 },
            account: ThrottlePolicy { free_failures: 20, base_delay: 1, max_delay: 60, window: 3600 },
        }
    }
}

/// The account part of a key: the username itself when short, else its SHA-256 (an
/// attacker's megabyte usernames make no megabyte keys).
fn account(username: &str) -> String {
    if username.len() <= 64 {
        username.to_string()
    } else {
        format!("#{}", hex::encode(crate::session::sha256(username.as_bytes())))
    }
}

impl LoginThrottle {
    /// The keys a login attempt for `username` from `origin` is reserved under.
    pub fn keys(&self, username: &str, origin: LoginOrigin<'_>) -> Vec<ThrottleKey> {
        let acct = account(username);
        let key = |key: String, policy, on_success| ThrottleKey { key, policy, on_success };
        match origin {
            LoginOrigin::Browser { device: Some(device), .. } => {
                vec![key(format!("device:{device}"), self.account_at_address, OnSuccess::Forget)]
            }
            LoginOrigin::Browser { address, device: None } => vec![
                key(format!("pair:ip:{address}|{acct}"), self.account_at_address, OnSuccess::Forget),
                key(format!("from:ip:{address}"), self.address, OnSuccess::Refund),
                key(format!("user:{acct}"), self.account, OnSuccess::Refund),
            ],
            // A partner speaks for all its users from one place, and must hold its key
            // and client secret to speak at all: no limit over all its accounts, which
            // its users' ordinary typing errors would reach.
            LoginOrigin::Partner { code } => vec![
                key(format!("pair:partner:{code}|{acct}"), self.account_at_address, OnSuccess::Forget),
                key(format!("user:{acct}"), self.account, OnSuccess::Refund),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_free_attempts_then_a_doubling_wait() {
        let p = ThrottlePolicy::default();
        let cases = [(0, 100), (4, 100), (5, 101), (6, 102), (9, 116), (50, 1000), (i64::MAX, 1000)];
        for (failures, next) in cases {
            assert_eq!(p.blocked_until(failures, 100), next, "after {failures} failures");
        }
    }

    #[test]
    fn which_keys_an_attempt_counts_under() {
        let t = LoginThrottle::default();
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let names = |keys: Vec<ThrottleKey>| keys.into_iter().map(|k| (k.key, k.on_success)).collect::<Vec<_>>();
        assert_eq!(
            names(t.keys("sv01", LoginOrigin::Browser { address: ip, device: None })),
            vec![
                ("pair:ip:203.0.113.7|sv01".to_string(), OnSuccess::Forget),
                ("from:ip:203.0.113.7".to_string(), OnSuccess::Refund),
                ("user:sv01".to_string(), OnSuccess::Refund),
            ]
        );
        // A known device is neither its address nor the attacked account.
        assert_eq!(
            names(t.keys("sv01", LoginOrigin::Browser { address: ip, device: Some("d1") })),
            vec![("device:d1".to_string(), OnSuccess::Forget)]
        );
        assert_eq!(
            names(t.keys("sv01", LoginOrigin::Partner { code: "ACME" })),
            vec![
                ("pair:partner:ACME|sv01".to_string(), OnSuccess::Forget),
                ("user:sv01".to_string(), OnSuccess::Refund)
            ]
        );
        let long = "x".repeat(10_000);
        assert!(t.keys(&long, LoginOrigin::Partner { code: "A" }).iter().all(|k| k.key.len() < 100));
    }

    #[test]
    fn the_address_limit_sits_far_above_the_account_limit() {
        let t = LoginThrottle::default();
        assert!(t.address.free_failures >= 10 * t.account_at_address.free_failures);
        assert!(t.account.max_delay <= 60, "an attacked account is delayed, never locked for long");
    }
}
