//! Quota state in Redis, shared by every replica: [`RedisQuotas`], an
//! [`Admission`] with the same limits and the same arithmetic as the
//! in-process [`QuotaEngine`](crate::policy::QuotaEngine).
//!
//! One call's admission is one round trip: one Lua script (`admit.lua`) reads the server's
//! clock (`TIME`, so replica clocks do not matter), checks every dimension, and writes only if
//! all admit:
//! - the rate, a GCRA ([`Gcra`]) per (tenant, identity, tool), its state one TAT;
//! - the concurrency, a lease per call in a sorted set per (tenant, identity, tool), scored by
//!   its expiry, so that a replica that dies mid-call holds its slots no longer than `lease_s`.
//!   A running call's lease is renewed every third of `lease_s`; it is given back when the
//!   call's permit drops, however the call ended: with the next admission of the same principal
//!   and tool (so a call costs one round trip), or on its own after [`FLUSH_AFTER`];
//! - the cost per minute, a GCRA per (tenant, identity);
//! - the egress budgets, a window per (tenant, identity): the call reserves what it may return,
//!   up to what is left, and gives back what it did not return when it ends.
//!
//! Each replica remembers the state the script last returned and sends it along: a key missing
//! while what was seen of it still runs means Redis lost its data, and the script restores it
//! as spent (the bucket empty, the budget window used up until it ends).
//!
//! Every key has a TTL, so an idle principal costs nothing. When Redis does not answer within
//! `redis_timeout_ms`, the call is denied ([`QuotaDenied::Unavailable`], `QUOTA_UNAVAILABLE`):
//! nothing is admitted without the shared state.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};

use crate::policy::{
    Admission, AdmitFuture, Allowance, Egress, Gcra, QuotaDenied, QuotaKey, QuotaPermit, QuotaPolicy, QuotaRequest,
    Release,
};

/// `backend = "redis"`. Its `Debug` never shows the URL, which may hold a password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisQuotaConfig {
    /// `redis://[user:password@]host[:port][/db]`.
    pub url: String,
    /// Put before every key, so that several deployments can share one Redis.
    pub key_prefix: String,
    /// How long a call waits for Redis before it is denied with `QUOTA_UNAVAILABLE`.
    pub timeout: Duration,
    /// How long a call's concurrency lease lasts unless renewed: a replica that dies mid-call
    /// holds its slots no longer than this.
    pub lease: Duration,
}

impl fmt::Debug for RedisQuotaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisQuotaConfig")
            .field("url", &"<not shown>")
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("lease", &self.lease)
            .finish()
    }
}

/// The scripts, loaded once per server (by `EVALSHA`, with `EVAL` when Redis has forgotten them).
struct Scripts {
    admit: Script,
    release: Script,
    renew: Script,
}

/// Quotas kept in Redis. Build it inside a tokio runtime: it connects lazily, on the first
/// call, and renews the leases of running calls from a task of its own.
pub struct RedisQuotas {
    policy: QuotaPolicy,
    rate: Gcra,
    cost: Option<Gcra>,
    manager: ConnectionManager,
    prefix: String,
    timeout: Duration,
    lease: Duration,
    /// This process's part of every lease id: random, so that replicas never share one.
    replica: String,
    next_lease: AtomicU64,
    scripts: Arc<Scripts>,
    /// The leases of calls still running, by number: renewed until their permits drop.
    running: Arc<Mutex<HashMap<u64, Running>>>,
    /// Reservations of finished calls not yet given back, by lease key.
    pending: Arc<Pending>,
    /// What this replica last saw of each key's state.
    seen: Seen,
}

/// What a replica last saw of the state in Redis, as the admission script returned it: the
/// rate's TAT by rate key, and the cost's TAT and the budget window by principal. It is sent
/// with each admission, so that the script can tell a key Redis lost (a restart without its
/// data) from one that expired, and restore the lost one as spent: no fresh burst, no fresh
/// budget. Bounded: a table past `max_keys` entries is emptied (and what it held can no longer
/// tell a loss).
#[derive(Default)]
struct Seen(Mutex<SeenTables>);

#[derive(Default)]
struct SeenTables {
    rate: HashMap<String, i64>,
    cost: HashMap<String, i64>,
    window: HashMap<String, (i64, i64, i64)>,
}

/// What was seen of one call's keys; 0 where nothing was.
#[derive(Default)]
struct Recalled {
    rate_tat: i64,
    cost_tat: i64,
    window: (i64, i64, i64),
}

impl Seen {
    fn recall(&self, rate_key: &str, principal: &str) -> Recalled {
        let Ok(seen) = self.0.lock() else { return Recalled::default() };
        Recalled {
            rate_tat: seen.rate.get(rate_key).copied().unwrap_or(0),
            cost_tat: seen.cost.get(principal).copied().unwrap_or(0),
            window: seen.window.get(principal).copied().unwrap_or((0, 0, 0)),
        }
    }

    /// Keeps the state an admission script returned: `[status, a, b, start, rate TAT, cost TAT,
    /// rows, bytes]`, where 0 means not known.
    fn remember(&self, rate_key: &str, principal: &str, reply: &[i64], max_keys: usize) {
        let at = |index: usize| reply.get(index).copied().unwrap_or(0);
        let Ok(mut seen) = self.0.lock() else { return };
        let SeenTables { rate, cost, window } = &mut *seen;
        if at(4) > 0 {
            bounded_insert(rate, rate_key, at(4), max_keys);
        }
        if at(5) > 0 {
            bounded_insert(cost, principal, at(5), max_keys);
        }
        if at(3) > 0 {
            bounded_insert(window, principal, (at(3), at(6), at(7)), max_keys);
        }
    }
}

fn bounded_insert<V>(table: &mut HashMap<String, V>, key: &str, value: V, max_keys: usize) {
    if table.len() >= max_keys && !table.contains_key(key) {
        table.clear();
    }
    table.insert(key.to_owned(), value);
}

/// How long a finished call's reservation waits for an admission of the same principal and
/// tool to carry it back before it is sent on its own. Until then, other replicas count its
/// slot as taken (never as free) and its unreturned egress as spent.
pub const FLUSH_AFTER: Duration = Duration::from_millis(20);

/// Finished calls' reservations waiting to be given back, and the flusher's bell.
#[derive(Default)]
struct Pending {
    by_lease_key: Mutex<HashMap<String, Waiting>>,
    bell: tokio::sync::Notify,
    /// Set when the quotas are dropped: the flusher sends what waits, then ends.
    closed: std::sync::atomic::AtomicBool,
}

/// The reservations of one principal and tool waiting to be given back.
struct Waiting {
    budget_key: String,
    calls: Vec<GiveBack>,
}

/// One finished call's reservation: its lease, and the egress to give back to its window.
struct GiveBack {
    lease_id: String,
    window: Option<String>,
    back: Egress,
}

impl Pending {
    /// The reservations waiting under `lease_key`, taken to be sent.
    fn take(&self, lease_key: &str) -> Vec<GiveBack> {
        self.by_lease_key
            .lock()
            .ok()
            .and_then(|mut waiting| waiting.remove(lease_key))
            .map_or_else(Vec::new, |w| w.calls)
    }

    /// Everything waiting, taken to be sent.
    fn take_all(&self) -> HashMap<String, Waiting> {
        self.by_lease_key.lock().map(|mut waiting| std::mem::take(&mut *waiting)).unwrap_or_default()
    }
}

/// `count, then for each call: lease id, window start ('' when not charged), rows, bytes`: the
/// arguments `give_back.lua` reads.
fn give_back_args(invocation: &mut redis::ScriptInvocation<'_>, calls: &[GiveBack]) {
    invocation.arg(calls.len());
    for call in calls {
        invocation
            .arg(&call.lease_id)
            .arg(call.window.as_deref().unwrap_or(""))
            .arg(call.back.rows)
            .arg(call.back.bytes);
    }
}

/// A running call's lease: its key and id, and when it was last renewed.
struct Running {
    key: String,
    id: String,
    renewed: Instant,
}

/// What a Redis script's failure or silence becomes: a denial, never an admission.
fn unavailable(error: &RedisError) -> QuotaDenied {
    QuotaDenied::Unavailable(format!("redis: {:?}", error.kind()))
}

impl RedisQuotas {
    /// Quotas applying `policy`, kept in the Redis `config` names. It does not connect yet:
    /// a Redis that is down denies calls, it does not stop the server from starting.
    pub fn new(config: &RedisQuotaConfig, policy: QuotaPolicy) -> Result<Self, String> {
        let client = redis::Client::open(config.url.as_str()).map_err(|error| format!("redis: {:?}", error.kind()))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout.max(Duration::from_millis(100))))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|error| format!("redis: {:?}", error.kind()))?;
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|error| format!("no randomness for lease ids: {error}"))?;
        let quotas = RedisQuotas {
            policy,
            rate: policy.rate(),
            cost: policy.cost(),
            manager,
            prefix: config.key_prefix.clone(),
            timeout: config.timeout,
            lease: config.lease,
            replica: hex::encode(random),
            next_lease: AtomicU64::new(0),
            scripts: Arc::new(Scripts {
                admit: Script::new(&[include_str!("give_back.lua"), include_str!("admit.lua")].concat()),
                release: Script::new(&[include_str!("give_back.lua"), include_str!("release.lua")].concat()),
                renew: Script::new(include_str!("renew.lua")),
            }),
            running: Arc::new(Mutex::new(HashMap::new())),
            pending: Arc::new(Pending::default()),
            seen: Seen::default(),
        };
        quotas.renew_running();
        quotas.flush_pending();
        Ok(quotas)
    }

    /// The policy applied.
    pub fn policy(&self) -> &QuotaPolicy {
        &self.policy
    }

    /// Whether Redis answers a `PING` within the timeout.
    pub async fn ping(&self) -> Result<(), String> {
        let mut connection = self.manager.clone();
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut connection);
        match tokio::time::timeout(self.timeout.max(Duration::from_secs(1)), ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(format!("redis: {:?}", error.kind())),
            Err(_) => Err("redis did not answer in time".into()),
        }
    }

    /// `{prefix}{<len>:<tenant>|<len>:<identity>}`: the keys of one principal, in one hash slot
    /// (the braces) and never shared with another, whatever the names hold (the lengths).
    fn principal_key(&self, key: &QuotaKey<'_>) -> String {
        format!("{}{{{}:{}|{}:{}}}", self.prefix, key.tenant.len(), key.tenant, key.identity.len(), key.identity)
    }

    async fn reserve(&self, request: QuotaRequest<'_>) -> Result<QuotaPermit, QuotaDenied> {
        let principal = self.principal_key(&request.key);
        let (rate_key, lease_key) =
            (format!("{principal}:rate:{}", request.key.tool), format!("{principal}:lease:{}", request.key.tool));
        let budget_key = format!("{principal}:budget");
        let number = self.next_lease.fetch_add(1, Ordering::Relaxed);
        let lease_id = format!("{}:{number}", self.replica);
        let micros = |duration: Duration| u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let wants = request.egress.filter(|_| self.policy.has_budget());
        let (cost_cells, cost_period, cost_tolerance) =
            self.cost.map_or((0, 0, 0), |cost| (request.cost.max(1), micros(cost.period), micros(cost.tolerance)));
        let signed = |value: Option<u64>| value.map_or(-1, |value| i64::try_from(value).unwrap_or(i64::MAX));
        let mut invocation = self.scripts.admit.key(&rate_key);
        invocation
            .key(&lease_key)
            .key(format!("{principal}:cost"))
            .key(&budget_key)
            .arg(micros(self.rate.period))
            .arg(micros(self.rate.tolerance))
            .arg(self.policy.max_concurrent())
            .arg(&lease_id)
            .arg(micros(self.lease))
            .arg(cost_cells)
            .arg(cost_period)
            .arg(cost_tolerance)
            .arg(self.policy.rows_per_hour().unwrap_or(0))
            .arg(self.policy.bytes_per_hour().unwrap_or(0))
            .arg(signed(wants.map(|wants| wants.rows)))
            .arg(signed(wants.map(|wants| wants.bytes)))
            .arg(micros(QuotaPolicy::BUDGET_WINDOW));
        let seen = self.seen.recall(&rate_key, &principal);
        invocation.arg(seen.rate_tat).arg(seen.cost_tat).arg(seen.window.0).arg(seen.window.1).arg(seen.window.2);
        // Finished calls of this principal and tool ride along. Should this round trip fail,
        // they are not sent again (a refund might then be counted twice): their leases expire
        // and their unreturned egress stays spent.
        give_back_args(&mut invocation, &self.pending.take(&lease_key));
        let mut connection = self.manager.clone();
        let reply: Vec<i64> = invocation.invoke_async(&mut connection).await.map_err(|error| unavailable(&error))?;
        self.seen.remember(&rate_key, &principal, &reply, self.policy.max_keys());
        let wait = |index: usize| Duration::from_micros(reply.get(index).copied().unwrap_or(0).max(0).unsigned_abs());
        match reply.first().copied() {
            Some(0) => {}
            Some(1) => return Err(QuotaDenied::Concurrency),
            Some(2) => return Err(QuotaDenied::Rate { retry_after: wait(1) }),
            Some(3) => return Err(QuotaDenied::Cost { retry_after: wait(1) }),
            Some(4) => return Err(QuotaDenied::CostTooHigh { cost: request.cost }),
            Some(5) => return Err(QuotaDenied::Budget { budget: "rows", refills_in: wait(1) }),
            Some(6) => return Err(QuotaDenied::Budget { budget: "bytes", refills_in: wait(1) }),
            _ => return Err(QuotaDenied::Failed("the admission script answered what it never says".into())),
        }
        let granted = |index: usize| reply.get(index).copied().and_then(|value| u64::try_from(value).ok());
        let allowance = Allowance { rows: granted(1), bytes: granted(2) };
        let window = wants.is_some().then(|| reply.get(3).copied().unwrap_or(0).to_string());
        if let Ok(mut running) = self.running.lock() {
            running.insert(number, Running { key: lease_key.clone(), id: lease_id.clone(), renewed: Instant::now() });
        }
        let release = RedisRelease {
            number,
            lease_key,
            lease_id,
            budget_key,
            window,
            reserved: Egress { rows: allowance.rows.unwrap_or(0), bytes: allowance.bytes.unwrap_or(0) },
            running: Arc::downgrade(&self.running),
            pending: Arc::downgrade(&self.pending),
        };
        Ok(QuotaPermit::new(release, allowance))
    }

    /// Starts the task that renews, every third of the lease, the leases of calls that have
    /// run that long. It ends when these quotas are dropped.
    fn renew_running(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (running, scripts, manager, lease) =
            (Arc::downgrade(&self.running), Arc::clone(&self.scripts), self.manager.clone(), self.lease);
        let every = (lease / 3).max(Duration::from_millis(100));
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(running) = running.upgrade() else { return };
                let due: Vec<(String, String)> = match running.lock() {
                    Ok(mut running) => running
                        .values_mut()
                        .filter(|call| call.renewed.elapsed() >= every)
                        .map(|call| {
                            call.renewed = Instant::now();
                            (call.key.clone(), call.id.clone())
                        })
                        .collect(),
                    Err(_) => return,
                };
                drop(running);
                for chunk in due.chunks(256) {
                    let mut invocation = scripts.renew.arg(u64::try_from(lease.as_micros()).unwrap_or(u64::MAX));
                    for (key, id) in chunk {
                        invocation.key(key).arg(id);
                    }
                    let mut connection = manager.clone();
                    let renewed = tokio::time::timeout(every, invocation.invoke_async::<i64>(&mut connection)).await;
                    if !matches!(renewed, Ok(Ok(_))) {
                        tracing::warn!("could not renew the leases of running calls; they expire after lease_s");
                    }
                }
            }
        });
    }
}

impl RedisQuotas {
    /// Starts the task that sends, [`FLUSH_AFTER`] after a call has finished, the reservations
    /// no admission has carried back. When these quotas are dropped, it sends what waits, then
    /// ends.
    fn flush_pending(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (pending, scripts, manager) = (Arc::clone(&self.pending), Arc::clone(&self.scripts), self.manager.clone());
        let timeout = self.timeout.max(Duration::from_secs(1));
        runtime.spawn(async move {
            loop {
                pending.bell.notified().await;
                let closed = pending.closed.load(Ordering::Relaxed);
                if !closed {
                    tokio::time::sleep(FLUSH_AFTER).await;
                }
                for (lease_key, Waiting { budget_key, calls }) in pending.take_all() {
                    let mut invocation = scripts.release.key(&lease_key);
                    invocation.key(&budget_key);
                    give_back_args(&mut invocation, &calls);
                    let mut connection = manager.clone();
                    let sent = tokio::time::timeout(timeout, invocation.invoke_async::<i64>(&mut connection)).await;
                    if !matches!(sent, Ok(Ok(_))) {
                        tracing::warn!("could not give back finished calls' quota; their leases expire after lease_s");
                    }
                }
                if closed {
                    return;
                }
            }
        });
    }
}

impl Admission for RedisQuotas {
    fn admit<'a>(&'a self, request: QuotaRequest<'a>) -> AdmitFuture<'a> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, self.reserve(request)).await {
                Ok(admitted) => admitted,
                Err(_) => Err(QuotaDenied::Unavailable("redis did not answer in time".into())),
            }
        })
    }
}

impl Drop for RedisQuotas {
    fn drop(&mut self) {
        self.pending.closed.store(true, Ordering::Relaxed);
        self.pending.bell.notify_one();
    }
}

impl std::fmt::Debug for RedisQuotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQuotas")
            .field("policy", &self.policy)
            .field("key_prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// Gives a Redis reservation back when the call's permit drops: the lease, and the egress
/// reserved but not returned. It waits for the next admission of the same principal and tool to
/// carry it, or for the flusher; should neither send it, the lease expires after `lease_s` and
/// the unreturned egress stays spent (fail closed).
struct RedisRelease {
    number: u64,
    lease_key: String,
    lease_id: String,
    budget_key: String,
    /// The budget window the reservation was taken from, if the call was charged.
    window: Option<String>,
    reserved: Egress,
    running: Weak<Mutex<HashMap<u64, Running>>>,
    pending: Weak<Pending>,
}

impl Release for RedisRelease {
    fn release(self: Box<Self>, used: Option<Egress>) {
        let RedisRelease { number, lease_key, lease_id, budget_key, window, reserved, running, pending } = *self;
        if let Some(running) = running.upgrade()
            && let Ok(mut running) = running.lock()
        {
            running.remove(&number);
        }
        let back = used.map_or(Egress::default(), |used| Egress {
            rows: reserved.rows.saturating_sub(used.rows),
            bytes: reserved.bytes.saturating_sub(used.bytes),
        });
        let Some(pending) = pending.upgrade() else { return };
        if let Ok(mut waiting) = pending.by_lease_key.lock() {
            waiting
                .entry(lease_key)
                .or_insert_with(|| Waiting { budget_key, calls: Vec::new() })
                .calls
                .push(GiveBack { lease_id, window, back });
        }
        pending.bell.notify_one();
    }
}
