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
