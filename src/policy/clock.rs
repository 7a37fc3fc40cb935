//! Time, passed into every decision so that expiry and rate rules can be tested at their edges.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// A source of time for the boundary: wall-clock time for expiries, monotonic time for quotas.
pub trait Clock: Send + Sync + 'static {
    /// The wall-clock time, compared with session and grant expiries.
    fn now(&self) -> SystemTime;
    /// Monotonic time since an arbitrary fixed origin, used by the rate limiter.
    fn monotonic(&self) -> Duration;
}

/// The real clock.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A system clock whose monotonic origin is now.
    pub fn new() -> Self {
        SystemClock { origin: Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that moves only when told to: for tests and simulations of expiry and rate limits.
#[derive(Debug)]
pub struct ManualClock {
    state: Mutex<(SystemTime, Duration)>,
}

impl ManualClock {
    /// A manual clock showing `wall` as the wall-clock time.
    pub fn starting_at(wall: SystemTime) -> Self {
        ManualClock { state: Mutex::new((wall, Duration::ZERO)) }
    }

    /// Moves both the wall clock and the monotonic clock forward.
    pub fn advance(&self, by: Duration) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.0 += by;
        state.1 += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).0
    }

    fn monotonic(&self) -> Duration {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_moves_forward() {
        let clock = SystemClock::new();
        let (wall, mono) = (clock.now(), clock.monotonic());
        std::thread::sleep(Duration::from_millis(2));
        assert!(clock.monotonic() >= mono + Duration::from_millis(2));
        assert!(clock.now() > wall);
        assert!(SystemClock::default().monotonic() < Duration::from_secs(1));
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let clock = ManualClock::starting_at(start);
        assert_eq!((clock.now(), clock.monotonic()), (start, Duration::ZERO));
        clock.advance(Duration::from_secs(3));
        assert_eq!((clock.now(), clock.monotonic()), (start + Duration::from_secs(3), Duration::from_secs(3)));
    }
}
