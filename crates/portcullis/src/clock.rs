//! The server's clock, handed to everything that needs the time: the one
//! place the wall clock is read. Time is Unix seconds as `i64` in every
//! layer (tokens, store, throttle), so nothing converts on the way down.
//!
//! Tests move a clock forward instead of sleeping: key activation, token
//! expiry and throttling windows are then checked in milliseconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Seconds since the Unix epoch.
pub type UnixTime = i64;

/// The wall clock, plus an offset that only tests change. Cheap to clone;
/// clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock::default()
    }

    /// The time now.
    #[allow(clippy::disallowed_methods)]
    pub fn now(&self) -> UnixTime {
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        wall as i64 + self.offset.load(Ordering::Relaxed)
    }

    /// Moves this clock (and its clones) `seconds` ahead: for tests.
    pub fn advance(&self, seconds: i64) {
        self.offset.fetch_add(seconds, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_advanced_clock_moves_its_clones_too() {
        let clock = Clock::system();
        let clone = clock.clone();
        let before = clone.now();
        clock.advance(3600);
        assert!(clone.now() >= before + 3600);
    }
}
