//! Time, injected: the server reads it from the [`Clock`] in its state, so every
//! rule that depends on it can be tested at any instant without waiting. The core
//! itself never reads a clock: its functions take `now`.

use crate::UnixTime;
use std::sync::atomic::{AtomicI64, Ordering};

/// Where the current time comes from.
pub trait Clock: Send + Sync + 'static {
    /// Unix seconds.
    fn now(&self) -> UnixTime;
    /// Unix milliseconds (for timestamps shown with them).
    fn now_millis(&self) -> i64 {
        self.now().saturating_mul(1000)
    }
}

/// A clock that moves only when told to: for tests.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now: UnixTime) -> Self {
        Self(AtomicI64::new(now))
    }

    pub fn set(&self, now: UnixTime) {
        self.0.store(now, Ordering::SeqCst);
    }

    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_when_told() {
        let clock = ManualClock::new(1000);
        assert_eq!((clock.now(), clock.now_millis()), (1000, 1_000_000));
        clock.advance(30);
        assert_eq!(clock.now(), 1030);
        clock.set(5);
        assert_eq!(clock.now(), 5);
    }
}
