//! The in-process [`Admission`]: quota state in this process's memory.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hashbrown::{Equivalent, HashMap};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{
    Admission, AdmitFuture, Allowance, Egress, Gcra, GcraDenied, QuotaDenied, QuotaKey, QuotaPermit, QuotaPolicy,
    QuotaRequest, Release, budget_grant,
};
use crate::policy::clock::{Clock, SystemClock};

/// The reference [`Admission`]: in-memory state, for one process.
pub struct QuotaEngine {
    policy: QuotaPolicy,
    rate: Gcra,
    cost: Option<Gcra>,
    clock: Arc<dyn Clock>,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    slots: HashMap<OwnedKey, Slot>,
    principals: HashMap<Principal, Spending>,
}

struct Slot {
    /// The rate's theoretical arrival time: the bucket is full again once it has passed.
    tat: Option<Duration>,
    in_flight: Arc<Semaphore>,
}

/// What a (tenant, identity) has spent: the cost quota's TAT and the current budget window.
#[derive(Default)]
struct Spending {
    cost_tat: Option<Duration>,
    window: Option<Window>,
}

/// One egress budget window: when it started, and the rows and bytes charged or reserved in it.
#[derive(Clone, Copy)]
struct Window {
    started: Duration,
    used: Egress,
}

#[derive(PartialEq, Eq, Hash)]
struct OwnedKey {
    tenant: Box<str>,
    identity: Box<str>,
    tool: Box<str>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Principal {
    tenant: Box<str>,
    identity: Box<str>,
}

impl Equivalent<OwnedKey> for QuotaKey<'_> {
    fn equivalent(&self, key: &OwnedKey) -> bool {
        *self.tenant == *key.tenant && *self.identity == *key.identity && *self.tool == *key.tool
    }
}

/// A principal's part of a key, hashed as [`Principal`] hashes.
struct PrincipalOf<'k, 'a>(&'k QuotaKey<'a>);

impl std::hash::Hash for PrincipalOf<'_, '_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.tenant.hash(state);
        self.0.identity.hash(state);
    }
}

impl Equivalent<Principal> for PrincipalOf<'_, '_> {
    fn equivalent(&self, key: &Principal) -> bool {
        *self.0.tenant == *key.tenant && *self.0.identity == *key.identity
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
            rate: policy.rate(),
            cost: policy.cost(),
            clock,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// The policy applied.
    pub fn policy(&self) -> &QuotaPolicy {
        &self.policy
    }

    /// Calls in flight for `key` now.
    pub fn in_flight(&self, key: &QuotaKey<'_>) -> usize {
        let Ok(state) = self.state.lock() else { return 0 };
        state
            .slots
            .get(key)
            .map_or(0, |slot| self.policy.max_concurrent() as usize - slot.in_flight.available_permits())
    }

    /// How many (tenant, identity, tool) keys have state now.
    pub fn tracked_keys(&self) -> usize {
        self.state.lock().map_or(0, |state| state.slots.len())
    }

    /// The rows and bytes charged or reserved in the current budget window of `key`'s tenant
    /// and identity.
    pub fn egress_used(&self, key: &QuotaKey<'_>) -> Egress {
        let now = self.clock.monotonic();
        let Ok(state) = self.state.lock() else { return Egress::default() };
        state
            .principals
            .get(&PrincipalOf(key))
            .and_then(|spending| spending.window)
            .filter(|window| now < window.started + QuotaPolicy::BUDGET_WINDOW)
            .map_or(Egress::default(), |window| window.used)
    }

    fn new_slot(&self) -> Slot {
        Slot { tat: None, in_flight: Arc::new(Semaphore::new(self.policy.max_concurrent() as usize)) }
    }

    /// A key may be forgotten only when forgetting it changes nothing: no call holds one of its
    /// slots, and its bucket has refilled completely.
    fn is_idle(&self, slot: &Slot, now: Duration) -> bool {
        slot.in_flight.available_permits() == self.policy.max_concurrent() as usize
            && slot.tat.is_none_or(|tat| tat <= now)
    }

    /// A principal's spending may be forgotten only when forgetting it changes nothing: its
    /// cost bucket is full again and its budget window is over.
    fn is_spent_out(spending: &Spending, now: Duration) -> bool {
        spending.cost_tat.is_none_or(|tat| tat <= now)
            && spending.window.is_none_or(|window| now >= window.started + QuotaPolicy::BUDGET_WINDOW)
    }

    /// Admits one call now, or says why not; what [`Admission::admit`] does, without waiting.
    pub fn try_admit(&self, request: &QuotaRequest<'_>) -> Result<QuotaPermit, QuotaDenied> {
        let key = &request.key;
        let now = self.clock.monotonic();
        // One lock for the whole decision keeps the dimensions atomic and keeps eviction from
        // racing an admission.
        let mut guard = self.state.lock().map_err(|_| QuotaDenied::Failed("quota lock poisoned".into()))?;
        let state = &mut *guard;
        if !state.slots.contains_key(key) {
            if state.slots.len() >= self.policy.max_keys() {
                state.slots.retain(|_, slot| !self.is_idle(slot, now));
            }
            if state.slots.len() >= self.policy.max_keys() {
                return Err(QuotaDenied::KeyTableFull);
            }
            let owned = OwnedKey { tenant: key.tenant.into(), identity: key.identity.into(), tool: key.tool.into() };
            state.slots.insert(owned, self.new_slot());
        }
        let wants = request.egress.filter(|_| self.policy.has_budget());
        let spends = self.cost.is_some() || wants.is_some();
        if spends && !state.principals.contains_key(&PrincipalOf(key)) {
            if state.principals.len() >= self.policy.max_keys() {
                state.principals.retain(|_, spending| !Self::is_spent_out(spending, now));
            }
            if state.principals.len() >= self.policy.max_keys() {
                return Err(QuotaDenied::KeyTableFull);
            }
            let principal = Principal { tenant: key.tenant.into(), identity: key.identity.into() };
            state.principals.insert(principal, Spending::default());
        }
        let slot = state.slots.get_mut(key).ok_or_else(|| QuotaDenied::Failed("quota slot vanished".into()))?;
        let held = Arc::clone(&slot.in_flight).try_acquire_owned().map_err(|_| QuotaDenied::Concurrency)?;
        // Then the rate, the cost and the budgets, in the order the Redis script checks them;
        // each decides without storing, and only a call every dimension admits stores. A
        // denial drops `held`: it keeps no concurrency slot.
        let rate_tat = self.rate.test(slot.tat, now, 1).map_err(|denied| QuotaDenied::Rate {
            retry_after: match denied {
                GcraDenied::Wait(wait) => wait,
                GcraDenied::Never => self.rate.period,
            },
        })?;
        let mut decided = Decided::default();
        if spends {
            let spending = state
                .principals
                .get(&PrincipalOf(key))
                .ok_or_else(|| QuotaDenied::Failed("quota principal vanished".into()))?;
            decided = self.decide_spending(spending, request, now)?;
        }
        if let Some(slot) = state.slots.get_mut(key) {
            slot.tat = Some(rate_tat);
        }
        let mut release = MemoryRelease { held, state: Arc::clone(&self.state), reserved: None };
        if spends && let Some(spending) = state.principals.get_mut(&PrincipalOf(key)) {
            if decided.cost_tat.is_some() {
                spending.cost_tat = decided.cost_tat;
            }
            if let Some(window) = decided.window {
                spending.window = Some(window);
                let principal = Principal { tenant: key.tenant.into(), identity: key.identity.into() };
                release.reserved = Some((principal, window.started, decided.grant));
            }
        }
        Ok(QuotaPermit::new(release, decided.allowance))
    }

    /// The cost and budget decisions for a call of the principal whose spending this is: what
    /// to store if the call is admitted, or why it is not.
    fn decide_spending(
        &self,
        spending: &Spending,
        request: &QuotaRequest<'_>,
        now: Duration,
    ) -> Result<Decided, QuotaDenied> {
        let mut decided = Decided::default();
        if let Some(cost) = self.cost {
            decided.cost_tat =
                Some(cost.test(spending.cost_tat, now, request.cost).map_err(|denied| match denied {
                    GcraDenied::Wait(retry_after) => QuotaDenied::Cost { retry_after },
                    GcraDenied::Never => QuotaDenied::CostTooHigh { cost: request.cost },
                })?);
        }
        if let Some(wants) = request.egress.filter(|_| self.policy.has_budget()) {
            let window = match spending.window {
                Some(window) if now < window.started + QuotaPolicy::BUDGET_WINDOW => window,
                _ => Window { started: now, used: Egress::default() },
            };
            let refills_in = window.started + QuotaPolicy::BUDGET_WINDOW - now;
            let grant = |limit: Option<u64>, used: u64, want: u64, budget| match limit {
                None => Ok(None),
                Some(limit) => {
                    budget_grant(limit, used, want).map(Some).ok_or(QuotaDenied::Budget { budget, refills_in })
                }
            };
            let rows = grant(self.policy.rows_per_hour(), window.used.rows, wants.rows, "rows")?;
            let bytes = grant(self.policy.bytes_per_hour(), window.used.bytes, wants.bytes, "bytes")?;
            decided.grant = Egress { rows: rows.unwrap_or(0), bytes: bytes.unwrap_or(0) };
            decided.allowance = Allowance { rows, bytes };
            let used = Egress {
                rows: window.used.rows.saturating_add(decided.grant.rows),
                bytes: window.used.bytes.saturating_add(decided.grant.bytes),
            };
            decided.window = Some(Window { started: window.started, used });
        }
        Ok(decided)
    }
}

/// What an admission stores once every dimension has said yes.
#[derive(Default)]
struct Decided {
    cost_tat: Option<Duration>,
    window: Option<Window>,
    grant: Egress,
    allowance: Allowance,
}

/// Gives back a memory reservation: the concurrency slot, and the part of the egress grant the
/// call did not return, to the window it was taken from.
struct MemoryRelease {
    held: OwnedSemaphorePermit,
    state: Arc<Mutex<State>>,
    reserved: Option<(Principal, Duration, Egress)>,
}

impl Release for MemoryRelease {
    fn release(self: Box<Self>, used: Option<Egress>) {
        let MemoryRelease { held, state, reserved } = *self;
        drop(held);
        let (Some((principal, started, grant)), Some(used)) = (reserved, used) else { return };
        let Ok(mut state) = state.lock() else { return };
        let Some(window) = state.principals.get_mut(&principal).and_then(|spending| spending.window.as_mut()) else {
            return;
        };
        if window.started == started {
            window.used.rows -= grant.rows.saturating_sub(used.rows).min(window.used.rows);
            window.used.bytes -= grant.bytes.saturating_sub(used.bytes).min(window.used.bytes);
        }
    }
}

impl Admission for QuotaEngine {
    fn admit<'a>(&'a self, request: QuotaRequest<'a>) -> AdmitFuture<'a> {
        Box::pin(std::future::ready(self.try_admit(&request)))
    }
}

impl fmt::Debug for QuotaEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuotaEngine").field("policy", &self.policy).field("keys", &self.tracked_keys()).finish()
    }
}
