//! The wall clock, the one place khoa-server reads the time of day: everything else
//! asks the [`Clock`] in [`AppState`](crate::AppState), which tests replace with a
//! `khoa_core::clock::ManualClock`.

pub use khoa_core::clock::{Clock, ManualClock};
use khoa_core::UnixTime;

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        self.now_millis().div_euclid(1000)
    }

    fn now_millis(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}
