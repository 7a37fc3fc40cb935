//! Quotas per (tenant, identity, tool): a token bucket (rate with burst) and a concurrency limit.
//!
//! Admission is atomic: a call is admitted in both dimensions or in neither, so a denial in one
//! dimension consumes nothing in the other. The reservation is a [`QuotaPermit`]: the
//! concurrency slot is held until the permit is dropped, whatever ends the call.

use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{Quota, RateLimiter, middleware::NoOpMiddleware, state::InMemoryState, state::NotKeyed};
use hashbrown::{Equivalent, HashMap};
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::clock::{Clock, SystemClock};

/// The limits applied to every (tenant, identity, tool) key.
///
/// The default, used when nothing is configured, is [`QuotaPolicy::DEFAULT_RATE_PER_MINUTE`]
/// calls a minute with bursts of [`QuotaPolicy::DEFAULT_BURST`], at most
/// [`QuotaPolicy::DEFAULT_MAX_CONCURRENT`] calls in flight, and state for at most
/// [`QuotaPolicy::DEFAULT_MAX_KEYS`] keys: never unlimited, never deny-all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaPolicy {
    rate_per_minute: NonZeroU32,
    burst: NonZeroU32,
    max_concurrent: NonZeroU32,
    max_keys: NonZeroUsize,
}

/// Why a quota policy was refused. Zero limits are refused rather than read as "deny
/// everything" or "no limit".
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum QuotaConfigError {
    /// A limit was zero.
    #[error("quota `{0}` must be at least 1")]
    Zero(&'static str),
    /// The concurrency limit is above [`QuotaPolicy::MAX_CONCURRENT`].
    #[error("quota `max_concurrent` must be at most {}", QuotaPolicy::MAX_CONCURRENT)]
    TooManyConcurrent,
}

impl QuotaPolicy {
    /// Calls per minute per key when nothing is configured.
    pub const DEFAULT_RATE_PER_MINUTE: u32 = 600;
    /// Burst size per key when nothing is configured.
    pub const DEFAULT_BURST: u32 = 60;
    /// Calls in flight per key when nothing is configured.
    pub const DEFAULT_MAX_CONCURRENT: u32 = 4;
    /// Keys whose state is kept when nothing is configured.
    pub const DEFAULT_MAX_KEYS: usize = 10_000;
    /// The largest concurrency limit accepted: far above any real pool, and a typo guard.
    pub const MAX_CONCURRENT: u32 = 1_000_000;

    /// A policy of `rate_per_minute` calls a minute with bursts of up to `burst`, and at most
    /// `max_concurrent` calls in flight, per key.
    pub fn new(rate_per_minute: u32, burst: u32, max_concurrent: u32) -> Result<Self, QuotaConfigError> {
        let nonzero = |value: u32, name| NonZeroU32::new(value).ok_or(QuotaConfigError::Zero(name));
        let max_concurrent = nonzero(max_concurrent, "max_concurrent")?;
        if max_concurrent.get() > Self::MAX_CONCURRENT {
            return Err(QuotaConfigError::TooManyConcurrent);
        }
        Ok(QuotaPolicy {
            rate_per_minute: nonzero(rate_per_minute, "rate_per_minute")?,
            burst: nonzero(burst, "burst")?,
            max_concurrent,
            max_keys: NonZeroUsize::new(Self::DEFAULT_MAX_KEYS).unwrap_or(NonZeroUsize::MIN),
        })
    }

    /// Keeps state for at most `max_keys` keys.
    pub fn with_max_keys(mut self, max_keys: usize) -> Result<Self, QuotaConfigError> {
        self.max_keys = NonZeroUsize::new(max_keys).ok_or(QuotaConfigError::Zero("max_keys"))?;
        Ok(self)
    }

    /// Calls a minute per key.
    pub fn rate_per_minute(&self) -> u32 {
        self.rate_per_minute.get()
    }

    /// Burst size per key.
    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    /// Calls in flight per key.
    pub fn max_concurrent(&self) -> u32 {
        self.max_concurrent.get()
    }

    /// Keys whose state is kept.
    pub fn max_keys(&self) -> usize {
        self.max_keys.get()
    }

    fn governor_quota(&self) -> Quota {
        Quota::per_minute(self.rate_per_minute).allow_burst(self.burst)
    }
}

impl Default for QuotaPolicy {
    fn default() -> Self {
        QuotaPolicy {
            rate_per_minute: NonZeroU32::new(Self::DEFAULT_RATE_PER_MINUTE).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(Self::DEFAULT_BURST).unwrap_or(NonZeroU32::MIN),
            max_concurrent: NonZeroU32::new(Self::DEFAULT_MAX_CONCURRENT).unwrap_or(NonZeroU32::MIN),
            max_keys: NonZeroUsize::new(Self::DEFAULT_MAX_KEYS).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

/// The key quotas are kept under. Fields are compared whole, so no choice of names can make
/// two keys collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotaKey<'a> {
    /// The caller's tenant.
    pub tenant: &'a str,
    /// The caller's identity.
    pub identity: &'a str,
    /// The tool called.
    pub tool: &'a str,
}

/// Why a call was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum QuotaDenied {
    /// The token bucket is empty.
    #[error("rate limit reached; retry in {retry_after:?}")]
    Rate {
        /// When the next call could be admitted.
        retry_after: Duration,
    },
    /// The key already has its maximum of calls in flight.
    #[error("too many calls in flight")]
    Concurrency,
    /// Quota state is full of keys that are still in use, so a new key cannot be tracked.
    #[error("quota state is full")]
    KeyTableFull,
    /// The quota state could not be evaluated.
    #[error("quota state unavailable: {0}")]
    Failed(String),
}

/// Reserves quota for a call.
///
/// The boundary treats a denial, and a panic, as [`crate::DenialCode::RateLimited`] or an
/// internal denial, never as an admission.
pub trait Admission: Send + Sync {
    /// Admits one call for `key`, or says why not. Nothing is consumed on denial.
    fn admit(&self, key: &QuotaKey<'_>) -> Result<QuotaPermit, QuotaDenied>;
}

impl<T: Admission + ?Sized> Admission for Arc<T> {
    fn admit(&self, key: &QuotaKey<'_>) -> Result<QuotaPermit, QuotaDenied> {
        (**self).admit(key)
    }
}

/// A quota reservation. Dropping it releases the concurrency slot, whether the call succeeded,
/// failed, panicked or was cancelled.
#[must_use = "dropping the permit releases the reservation at once"]
pub struct QuotaPermit {
    _guard: Guard,
}

enum Guard {
    Slot(#[allow(dead_code)] OwnedSemaphorePermit),
    Custom(#[allow(dead_code)] Box<dyn Send + Sync>),
}

impl QuotaPermit {
    /// A permit that holds `guard` until the call ends, for [`Admission`] implementations of
    /// your own: put whatever releases your reservation in its `Drop`.
    pub fn from_guard(guard: impl Send + Sync + 'static) -> Self {
        QuotaPermit { _guard: Guard::Custom(Box::new(guard)) }
    }
}

impl fmt::Debug for QuotaPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("QuotaPermit")
    }
}

/// The reference [`Admission`]: in-memory state per key, for one process.
pub struct QuotaEngine {
    policy: QuotaPolicy,
    quota: Quota,
    clock: GovernorClock,
    slots: Mutex<HashMap<OwnedKey, Slot>>,
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, GovernorClock, NoOpMiddleware<Duration>>;

struct Slot {
    limiter: Limiter,
    in_flight: Arc<Semaphore>,
    last_admitted: Duration,
}

#[derive(PartialEq, Eq, Hash)]
struct OwnedKey {
    tenant: Box<str>,
    identity: Box<str>,
    tool: Box<str>,
}

impl Equivalent<OwnedKey> for QuotaKey<'_> {
    fn equivalent(&self, key: &OwnedKey) -> bool {
        *self.tenant == *key.tenant && *self.identity == *key.identity && *self.tool == *key.tool
    }
}

#[derive(Clone)]
struct GovernorClock(Arc<dyn Clock>);

impl governor::clock::Clock for GovernorClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.0.monotonic()
    }
}

impl QuotaEngine {
    /// An engine applying `policy` with the system clock.
    pub fn new(policy: QuotaPolicy) -> Self {
        Self::with_clock(policy, Arc::new(SystemClock::new()))
    }

    /// An engine applying `policy`, reading time from `clock`.
    pub fn with_clock(policy: QuotaPolicy, clock: Arc<dyn Clock>) -> Self {
        QuotaEngine {
            policy,
            quota: policy.governor_quota(),
            clock: GovernorClock(clock),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The policy applied.
    pub fn policy(&self) -> &QuotaPolicy {
        &self.policy
    }

    /// Calls in flight for `key` now.
    pub fn in_flight(&self, key: &QuotaKey<'_>) -> usize {
        let Ok(slots) = self.slots.lock() else { return 0 };
        slots.get(key).map_or(0, |slot| self.policy.max_concurrent() as usize - slot.in_flight.available_permits())
    }

    /// How many keys have state now.
    pub fn tracked_keys(&self) -> usize {
        self.slots.lock().map_or(0, |slots| slots.len())
    }

    fn new_slot(&self, now: Duration) -> Slot {
        Slot {
            limiter: RateLimiter::direct_with_clock(self.quota, self.clock.clone()),
            in_flight: Arc::new(Semaphore::new(self.policy.max_concurrent() as usize)),
            last_admitted: now,
        }
    }

    /// A key may be forgotten only when forgetting it changes nothing: no call holds one of its
    /// slots, and its bucket has refilled completely since its last admission.
    fn is_idle(&self, slot: &Slot, now: Duration) -> bool {
        slot.in_flight.available_permits() == self.policy.max_concurrent() as usize
            && now.saturating_sub(slot.last_admitted) >= self.quota.burst_size_replenished_in()
    }
}

impl Admission for QuotaEngine {
    fn admit(&self, key: &QuotaKey<'_>) -> Result<QuotaPermit, QuotaDenied> {
        let now = self.clock.0.monotonic();
        // One lock for the whole decision keeps the two dimensions atomic and keeps eviction
        // from racing an admission.
        let mut slots = self.slots.lock().map_err(|_| QuotaDenied::Failed("quota lock poisoned".into()))?;
        if !slots.contains_key(key) {
            if slots.len() >= self.policy.max_keys() {
                slots.retain(|_, slot| !self.is_idle(slot, now));
            }
            if slots.len() >= self.policy.max_keys() {
                return Err(QuotaDenied::KeyTableFull);
            }
            let owned = OwnedKey { tenant: key.tenant.into(), identity: key.identity.into(), tool: key.tool.into() };
            slots.insert(owned, self.new_slot(now));
        }
        let slot = slots.get_mut(key).ok_or_else(|| QuotaDenied::Failed("quota slot vanished".into()))?;
        let held = Arc::clone(&slot.in_flight).try_acquire_owned().map_err(|_| QuotaDenied::Concurrency)?;
        if let Err(not_until) = slot.limiter.check() {
            // `held` drops here: a rate denial must not keep a concurrency slot.
            return Err(QuotaDenied::Rate { retry_after: not_until.wait_time_from(now) });
        }
        slot.last_admitted = now;
        Ok(QuotaPermit { _guard: Guard::Slot(held) })
    }
}

impl fmt::Debug for QuotaEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuotaEngine").field("policy", &self.policy).field("keys", &self.tracked_keys()).finish()
    }
}
