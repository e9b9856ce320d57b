//! Login throttling: after a few failures for one account or one address, each further
//! failure doubles a waiting period during which attempts are refused (429 with
//! Retry-After) without checking the password at all.

use crate::UnixTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures allowed before any waiting period.
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
    /// Until when attempts are refused after the `failures`-th consecutive failure at `now`.
    pub fn blocked_until(&self, failures: i64, now: UnixTime) -> UnixTime {
        if failures <= self.free_failures {
            return now;
        }
        let exponent = (failures - self.free_failures - 1).min(30) as u32;
        now + self.base_delay.saturating_mul(1i64 << exponent).min(self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_then_capped() {
        let p = ThrottlePolicy::default();
        assert_eq!(p.blocked_until(5, 100), 100);
        assert_eq!(p.blocked_until(6, 100), 101);
        assert_eq!(p.blocked_until(7, 100), 102);
        assert_eq!(p.blocked_until(10, 100), 116);
        assert_eq!(p.blocked_until(50, 100), 1000);
        assert_eq!(p.blocked_until(i64::MAX, 100), 1000);
    }
}
