//! Quotas: a rate with bursts and a concurrency limit per (tenant, identity, tool), and, per
//! (tenant, identity), a cost per minute and egress budgets (rows and bytes an hour).
//!
//! Admission is atomic: a call is admitted in every dimension or in none, so a denial in one
//! consumes nothing in the others. The reservation is a [`QuotaPermit`]: the concurrency slot is
//! held until the permit is dropped, whatever ends the call, and the egress it reserved is
//! settled then against what the call returned ([`QuotaPermit::charge`]).
//!
//! The [`Admission`] trait is the seam between the boundary and where quota state lives:
//! [`QuotaEngine`] keeps it in this process; a shared store (Redis, in `crate::quota`) lets
//! replicas hold one limit. Both apply the same arithmetic, [`Gcra`] and [`budget_grant`].

use std::fmt;
use std::future::Future;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use thiserror::Error;

mod memory;

pub use memory::QuotaEngine;

/// The limits applied to every (tenant, identity, tool) key, and to every (tenant, identity).
///
/// The default, used when nothing is configured, is [`QuotaPolicy::DEFAULT_RATE_PER_MINUTE`]
/// calls a minute with bursts of [`QuotaPolicy::DEFAULT_BURST`], at most
/// [`QuotaPolicy::DEFAULT_MAX_CONCURRENT`] calls in flight, and state for at most
/// [`QuotaPolicy::DEFAULT_MAX_KEYS`] keys: never unlimited, never deny-all. The cost quota and
/// the egress budgets are off unless set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaPolicy {
    rate_per_minute: NonZeroU32,
    burst: NonZeroU32,
    max_concurrent: NonZeroU32,
    max_keys: NonZeroUsize,
    cost_per_minute: Option<NonZeroU32>,
    rows_per_hour: Option<NonZeroU64>,
    bytes_per_hour: Option<NonZeroU64>,
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
    /// How long an egress budget lasts: it starts with the first call it charges and, an hour
    /// later, is full again.
    pub const BUDGET_WINDOW: Duration = Duration::from_secs(3600);

    /// A policy of `rate_per_minute` calls a minute with bursts of up to `burst`, and at most
    /// `max_concurrent` calls in flight, per key.
    pub fn new(rate_per_minute: u32, burst: u32, max_concurrent: u32) -> Result<Self, QuotaConfigError> {
        let max_concurrent = nonzero(max_concurrent, "max_concurrent")?;
        if max_concurrent.get() > Self::MAX_CONCURRENT {
            return Err(QuotaConfigError::TooManyConcurrent);
        }
        Ok(QuotaPolicy {
            rate_per_minute: nonzero(rate_per_minute, "rate_per_minute")?,
            burst: nonzero(burst, "burst")?,
            max_concurrent,
            ..QuotaPolicy::default()
        })
    }

    /// Keeps state for at most `max_keys` keys.
    pub fn with_max_keys(mut self, max_keys: usize) -> Result<Self, QuotaConfigError> {
        self.max_keys = NonZeroUsize::new(max_keys).ok_or(QuotaConfigError::Zero("max_keys"))?;
        Ok(self)
    }

    /// Bounds the sum of the costs of the calls of each (tenant, identity) to `cost_per_minute`
    /// a minute, with bursts of up to a minute's worth. A call costs what its tool says
    /// ([`crate::tools::Tool::cost`]; 1 unless the tool weighs its input).
    pub fn with_cost_per_minute(mut self, cost_per_minute: u32) -> Result<Self, QuotaConfigError> {
        self.cost_per_minute = Some(nonzero(cost_per_minute, "cost_per_minute")?);
        Ok(self)
    }

    /// Bounds the rows the reads of each (tenant, identity) return to `rows_per_hour` in each
    /// [`BUDGET_WINDOW`](Self::BUDGET_WINDOW).
    pub fn with_rows_per_hour(mut self, rows_per_hour: u64) -> Result<Self, QuotaConfigError> {
        self.rows_per_hour = Some(NonZeroU64::new(rows_per_hour).ok_or(QuotaConfigError::Zero("rows_per_hour"))?);
        Ok(self)
    }

    /// Bounds the bytes of JSON the reads of each (tenant, identity) return to `bytes_per_hour`
    /// in each [`BUDGET_WINDOW`](Self::BUDGET_WINDOW).
    pub fn with_bytes_per_hour(mut self, bytes_per_hour: u64) -> Result<Self, QuotaConfigError> {
        self.bytes_per_hour = Some(NonZeroU64::new(bytes_per_hour).ok_or(QuotaConfigError::Zero("bytes_per_hour"))?);
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

    /// The cost a (tenant, identity) may spend a minute, if bounded.
    pub fn cost_per_minute(&self) -> Option<u32> {
        self.cost_per_minute.map(NonZeroU32::get)
    }

    /// The rows a (tenant, identity) may read an hour, if bounded.
    pub fn rows_per_hour(&self) -> Option<u64> {
        self.rows_per_hour.map(NonZeroU64::get)
    }

    /// The bytes a (tenant, identity) may read an hour, if bounded.
    pub fn bytes_per_hour(&self) -> Option<u64> {
        self.bytes_per_hour.map(NonZeroU64::get)
    }

    /// Whether reads are charged against an egress budget.
    pub fn has_budget(&self) -> bool {
        self.rows_per_hour.is_some() || self.bytes_per_hour.is_some()
    }

    /// The rate as a cell rate: one call per `60 s / rate_per_minute`, `burst` at once.
    pub fn rate(&self) -> Gcra {
        Gcra::per_minute(self.rate_per_minute, self.burst)
    }

    /// The cost quota as a cell rate, one cell per unit of cost, a minute's worth at once.
    pub fn cost(&self) -> Option<Gcra> {
        self.cost_per_minute.map(|per_minute| Gcra::per_minute(per_minute, per_minute))
    }
}

fn nonzero(value: u32, name: &'static str) -> Result<NonZeroU32, QuotaConfigError> {
    NonZeroU32::new(value).ok_or(QuotaConfigError::Zero(name))
}

impl Default for QuotaPolicy {
    fn default() -> Self {
        QuotaPolicy {
            rate_per_minute: NonZeroU32::new(Self::DEFAULT_RATE_PER_MINUTE).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(Self::DEFAULT_BURST).unwrap_or(NonZeroU32::MIN),
            max_concurrent: NonZeroU32::new(Self::DEFAULT_MAX_CONCURRENT).unwrap_or(NonZeroU32::MIN),
            max_keys: NonZeroUsize::new(Self::DEFAULT_MAX_KEYS).unwrap_or(NonZeroUsize::MIN),
            cost_per_minute: None,
            rows_per_hour: None,
            bytes_per_hour: None,
        }
    }
}

/// The generic cell rate algorithm, as the `governor` crate computes it (a test holds the two
/// to the same answers): one cell every
/// `period`, and up to `tolerance / period + 1` cells at once. The state is one instant, the
/// theoretical arrival time (TAT) of the next cell. Every backend admits by this arithmetic
/// (the Redis backend's script repeats it in microseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// The time one cell takes to come back.
    pub period: Duration,
    /// How far ahead of now the TAT may run: `period * (burst - 1)`.
    pub tolerance: Duration,
}

/// Why [`Gcra::test`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcraDenied {
    /// The cells come back after this long.
    Wait(Duration),
    /// More cells than the burst: never admitted.
    Never,
}

impl Gcra {
    /// `per_minute` cells a minute, `burst` at once.
    pub fn per_minute(per_minute: NonZeroU32, burst: NonZeroU32) -> Self {
        let period = (Duration::from_secs(60) / per_minute.get()).max(Duration::from_nanos(1));
        Gcra { period, tolerance: period.saturating_mul(burst.get() - 1) }
    }

    /// Tests `cells` cells at `now` against the state `tat` (`None` for a key never seen, or
    /// forgotten). Admitted, it returns the new TAT to store; nothing is stored on refusal.
    pub fn test(&self, tat: Option<Duration>, now: Duration, cells: u32) -> Result<Duration, GcraDenied> {
        let extra = self.period.saturating_mul(cells.max(1) - 1);
        if extra > self.tolerance {
            return Err(GcraDenied::Never);
        }
        let tat = tat.unwrap_or(now);
        let earliest = (tat + extra).saturating_sub(self.tolerance);
        if now < earliest {
            return Err(GcraDenied::Wait(earliest - now));
        }
        Ok(tat.max(now) + self.period + extra)
    }
}

/// What the reads of a (tenant, identity) may still return in the current window: `limit` less
/// what is `used` (charged or reserved). `want` is the most the call could return. The grant is
/// `min(left, want)`; `None` when nothing is left.
pub fn budget_grant(limit: u64, used: u64, want: u64) -> Option<u64> {
    let left = limit.saturating_sub(used);
    (left > 0).then_some(left.min(want))
}

/// The key rate and concurrency are kept under. Fields are compared whole, so no choice of
/// names can make two keys collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotaKey<'a> {
    /// The caller's tenant.
    pub tenant: &'a str,
    /// The caller's identity.
    pub identity: &'a str,
    /// The tool called.
    pub tool: &'a str,
}

/// Rows and bytes of a read's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Egress {
    /// Rows.
    pub rows: u64,
    /// Bytes of JSON text.
    pub bytes: u64,
}

/// What a call asks of the quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaRequest<'a> {
    /// Whose call, to which tool.
    pub key: QuotaKey<'a>,
    /// Its cost against `cost_per_minute` (at least 1).
    pub cost: u32,
    /// For a read charged against the egress budgets, the most it could return; `None` for a
    /// call that returns no rows.
    pub egress: Option<Egress>,
}

impl<'a> From<QuotaKey<'a>> for QuotaRequest<'a> {
    /// A call of cost 1 that returns no rows.
    fn from(key: QuotaKey<'a>) -> Self {
        QuotaRequest { key, cost: 1, egress: None }
    }
}

/// What an admitted read may return under the egress budgets: `None` where no budget applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Allowance {
    /// The most rows.
    pub rows: Option<u64>,
    /// The most bytes of JSON text.
    pub bytes: Option<u64>,
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
    /// The cost quota is spent for now.
    #[error("cost quota reached; retry in {retry_after:?}")]
    Cost {
        /// When the call's cost could be admitted.
        retry_after: Duration,
    },
    /// The call costs more than a minute's whole cost quota: it can never be admitted.
    #[error("the call costs {cost}, more than cost_per_minute allows at once")]
    CostTooHigh {
        /// The call's cost.
        cost: u32,
    },
    /// An egress budget is spent (or reserved by calls in flight).
    #[error("the hourly {budget} budget is spent; it refills in {refills_in:?}")]
    Budget {
        /// `rows` or `bytes`.
        budget: &'static str,
        /// When the budget's window ends and it is full again.
        refills_in: Duration,
    },
    /// The shared quota store could not answer in time: nothing is admitted without it.
    #[error("quota store unavailable: {0}")]
    Unavailable(String),
    /// The quota state could not be evaluated.
    #[error("quota state unavailable: {0}")]
    Failed(String),
}

/// A future that admits a call or says why not.
pub type AdmitFuture<'a> = Pin<Box<dyn Future<Output = Result<QuotaPermit, QuotaDenied>> + Send + 'a>>;

/// Reserves quota for a call: the seam between the boundary and where quota state lives.
///
/// The boundary treats a denial, and a panic, as a denial ([`crate::DenialCode::RateLimited`],
/// `BUDGET_EXHAUSTED`, `QUOTA_UNAVAILABLE` or an internal denial), never as an admission.
pub trait Admission: Send + Sync {
    /// Admits one call, or says why not. Nothing is consumed on denial. What the permit
    /// reserved is settled when it is dropped (see [`Release`]).
    fn admit<'a>(&'a self, request: QuotaRequest<'a>) -> AdmitFuture<'a>;
}

impl<T: Admission + ?Sized> Admission for Arc<T> {
    fn admit<'a>(&'a self, request: QuotaRequest<'a>) -> AdmitFuture<'a> {
        (**self).admit(request)
    }
}

/// What gives a reservation back when its permit is dropped.
pub trait Release: Send + Sync + 'static {
    /// Called once, when the permit is dropped, with what the call returned
    /// ([`QuotaPermit::charge`]): `None` when it never said, and then the whole egress
    /// reservation stays spent.
    fn release(self: Box<Self>, used: Option<Egress>);
}

/// A quota reservation. Dropping it releases the concurrency slot, whether the call succeeded,
/// failed, panicked or was cancelled, and settles the egress it reserved.
#[must_use = "dropping the permit releases the reservation at once"]
pub struct QuotaPermit {
    release: Option<Box<dyn Release>>,
    allowance: Allowance,
    /// What the call returned, once charged: rows and bytes; `u64::MAX` until then.
    used_rows: AtomicU64,
    used_bytes: AtomicU64,
}

struct Holds<G>(#[allow(dead_code)] G);

impl<G: Send + Sync + 'static> Release for Holds<G> {
    fn release(self: Box<Self>, _used: Option<Egress>) {}
}

impl QuotaPermit {
    /// A permit that reserved `allowance` and calls `release` when dropped.
    pub fn new(release: impl Release, allowance: Allowance) -> Self {
        QuotaPermit {
            release: Some(Box::new(release)),
            allowance,
            used_rows: AtomicU64::new(u64::MAX),
            used_bytes: AtomicU64::new(u64::MAX),
        }
    }

    /// A permit that holds `guard` until the call ends, for [`Admission`] implementations of
    /// your own: put whatever releases your reservation in its `Drop`. It reserves no egress.
    pub fn from_guard(guard: impl Send + Sync + 'static) -> Self {
        QuotaPermit::new(Holds(guard), Allowance::default())
    }

    /// What the call may return under the egress budgets.
    pub fn allowance(&self) -> Allowance {
        self.allowance
    }

    /// Records what the call returned, to settle its reservation with when the permit drops.
    pub fn charge(&self, used: Egress) {
        self.used_rows.store(used.rows, Ordering::Relaxed);
        self.used_bytes.store(used.bytes, Ordering::Relaxed);
    }

    fn used(&self) -> Option<Egress> {
        let (rows, bytes) = (self.used_rows.load(Ordering::Relaxed), self.used_bytes.load(Ordering::Relaxed));
        (rows != u64::MAX && bytes != u64::MAX).then_some(Egress { rows, bytes })
    }
}

impl Drop for QuotaPermit {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release.release(self.used());
        }
    }
}

impl fmt::Debug for QuotaPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("QuotaPermit")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gcra(per_minute: u32, burst: u32) -> Gcra {
        Gcra::per_minute(NonZeroU32::new(per_minute).expect("nonzero"), NonZeroU32::new(burst).expect("nonzero"))
    }

    #[test]
    fn the_cell_rate_admits_a_burst_then_one_cell_a_period() {
        let rate = gcra(60, 3);
        assert_eq!(rate, Gcra { period: Duration::from_secs(1), tolerance: Duration::from_secs(2) });
        let now = Duration::from_secs(100);
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(rate.test(tat, now, 1).expect("within the burst"));
        }
        assert_eq!(rate.test(tat, now, 1), Err(GcraDenied::Wait(Duration::from_secs(1))));
        let later = now + Duration::from_secs(1);
        tat = Some(rate.test(tat, later, 1).expect("one came back"));
        assert_eq!(rate.test(tat, later, 1), Err(GcraDenied::Wait(Duration::from_secs(1))));
    }

    #[test]
    fn many_cells_at_once_fit_only_within_the_burst() {
        let cost = gcra(60, 60);
        let now = Duration::from_secs(100);
        assert_eq!(cost.test(None, now, 61), Err(GcraDenied::Never));
        let tat = cost.test(None, now, 60).expect("a minute's worth at once");
        assert_eq!(tat, now + Duration::from_secs(60));
        assert_eq!(cost.test(Some(tat), now, 1), Err(GcraDenied::Wait(Duration::from_secs(1))));
        assert_eq!(cost.test(Some(tat), now + Duration::from_secs(10), 10), Ok(tat + Duration::from_secs(10)));
        assert_eq!(
            cost.test(Some(tat), now + Duration::from_secs(10), 11),
            Err(GcraDenied::Wait(Duration::from_secs(1)))
        );
    }

    #[test]
    fn a_budget_grants_what_is_left_up_to_what_the_call_wants() {
        assert_eq!(budget_grant(100, 0, 30), Some(30));
        assert_eq!(budget_grant(100, 80, 30), Some(20));
        assert_eq!(budget_grant(100, 100, 30), None);
        assert_eq!(budget_grant(100, 130, 30), None);
        assert_eq!(budget_grant(100, 99, 0), Some(0));
    }

    #[test]
    fn the_cell_rate_agrees_with_governor() {
        use governor::clock::{FakeRelativeClock, Reference};
        use governor::{Quota, RateLimiter};
        for (per_minute, burst) in [(60, 1), (60, 5), (600, 60), (7, 3), (6000, 1)] {
            let clock = FakeRelativeClock::default();
            let quota = Quota::per_minute(NonZeroU32::new(per_minute).expect("nonzero"))
                .allow_burst(NonZeroU32::new(burst).expect("nonzero"));
            let limiter = RateLimiter::direct_with_clock(quota, clock.clone());
            let rate = gcra(per_minute, burst);
            let start = governor::clock::Clock::now(&clock);
            let mut tat = None;
            for step in 0..400u64 {
                // Uneven steps: bursts, pauses, and arrivals between periods.
                clock.advance(Duration::from_millis((step * 7919) % 1700));
                let now = governor::clock::Clock::now(&clock).duration_since(start).into();
                let ours = rate.test(tat, now, 1);
                if let Ok(next) = ours {
                    tat = Some(next);
                }
                assert_eq!(ours.is_ok(), limiter.check().is_ok(), "{per_minute}/min, burst {burst}, step {step}");
            }
        }
    }
}
