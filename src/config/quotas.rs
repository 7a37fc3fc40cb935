//! `[quotas]`: the limits, and where their state lives.
//!
//! ```toml
//! [quotas]
//! rate_per_minute = 600        # per (tenant, identity, tool)
//! burst = 60
//! max_concurrent = 4
//! cost_per_minute = 1000       # per (tenant, identity); off unless set
//! rows_per_hour = 100000       # egress budgets per (tenant, identity); off unless set
//! bytes_per_hour = 50000000
//! backend = "redis"            # "memory" (the default): this process only
//! redis_url_env = "REDIS_URL"  # or redis_url = "redis://127.0.0.1:6379/0"
//! key_prefix = "sqlwarden:"
//! redis_timeout_ms = 50
//! lease_s = 60
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::policy::QuotaPolicy;
use crate::quota::RedisQuotaConfig;

/// Where quota state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaStore {
    /// In this process: replicas do not share it.
    Memory,
    /// In Redis, shared by every replica that names the same server and key prefix.
    Redis(RedisQuotaConfig),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuotas {
    rate_per_minute: Option<u32>,
    burst: Option<u32>,
    max_concurrent: Option<u32>,
    cost_per_minute: Option<u32>,
    rows_per_hour: Option<u64>,
    bytes_per_hour: Option<u64>,
    backend: Option<String>,
    redis_url: Option<String>,
    redis_url_env: Option<String>,
    key_prefix: Option<String>,
    redis_timeout_ms: Option<u64>,
    lease_s: Option<u64>,
}

/// The longest `redis_timeout_ms`: a quota check that waits longer is an outage, not a check.
const MAX_REDIS_TIMEOUT_MS: u64 = 10_000;
/// The longest `lease_s`: a day.
const MAX_LEASE_S: u64 = 86_400;

/// Reads `[quotas]`; `env` reads `redis_url_env`. An error names the key, never the URL.
pub(super) fn quotas(
    raw: RawQuotas,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(QuotaPolicy, QuotaStore), String> {
    let defaults = QuotaPolicy::default();
    let in_quotas = |error| format!("[quotas] {error}");
    let mut policy = QuotaPolicy::new(
        raw.rate_per_minute.unwrap_or(defaults.rate_per_minute()),
        raw.burst.unwrap_or(defaults.burst()),
        raw.max_concurrent.unwrap_or(defaults.max_concurrent()),
    )
    .map_err(in_quotas)?;
    if let Some(cost) = raw.cost_per_minute {
        policy = policy.with_cost_per_minute(cost).map_err(in_quotas)?;
    }
    if let Some(rows) = raw.rows_per_hour {
        policy = policy.with_rows_per_hour(rows).map_err(in_quotas)?;
    }
    if let Some(bytes) = raw.bytes_per_hour {
        policy = policy.with_bytes_per_hour(bytes).map_err(in_quotas)?;
    }
    let redis_keys = [
        ("redis_url", raw.redis_url.is_some()),
        ("redis_url_env", raw.redis_url_env.is_some()),
        ("key_prefix", raw.key_prefix.is_some()),
        ("redis_timeout_ms", raw.redis_timeout_ms.is_some()),
        ("lease_s", raw.lease_s.is_some()),
    ];
    let store = match raw.backend.as_deref().unwrap_or("memory") {
        "memory" => {
            if let Some((key, _)) = redis_keys.iter().find(|(_, set)| *set) {
                return Err(format!("[quotas] {key} is set but backend is \"memory\"; set backend = \"redis\""));
            }
            QuotaStore::Memory
        }
        "redis" => QuotaStore::Redis(redis(raw, env)?),
        _ => return Err("[quotas] backend must be \"memory\" or \"redis\"".into()),
    };
    Ok((policy, store))
}

fn redis(raw: RawQuotas, env: impl Fn(&str) -> Option<String>) -> Result<RedisQuotaConfig, String> {
    let url = match (raw.redis_url, raw.redis_url_env) {
        (Some(url), None) => url,
        (None, Some(name)) => env(&name)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| format!("[quotas] redis_url_env names {name}, which is not set"))?,
        (Some(_), Some(_)) => return Err("[quotas] has both redis_url and redis_url_env; keep one".into()),
        (None, None) => return Err("[quotas] backend = \"redis\" needs redis_url or redis_url_env".into()),
    };
    let parsed = url::Url::parse(&url).map_err(|_| "[quotas] the Redis URL is not a URL".to_owned())?;
    match parsed.scheme() {
        "redis" => {}
        "rediss" => {
            return Err("[quotas] rediss:// (TLS) is not supported yet; use redis:// on a trusted network".into());
        }
        _ => return Err("[quotas] the Redis URL must start with redis://".into()),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("[quotas] the Redis URL names no host".into());
    }
    let key_prefix = raw.key_prefix.unwrap_or_else(|| "sqlwarden:".into());
    if key_prefix.len() > 128 || key_prefix.chars().any(|c| c.is_control() || c == '{' || c == '}') {
        return Err("[quotas] key_prefix must be at most 128 characters, without control characters or braces".into());
    }
    let timeout_ms = raw.redis_timeout_ms.unwrap_or(50);
    if !(1..=MAX_REDIS_TIMEOUT_MS).contains(&timeout_ms) {
        return Err(format!("[quotas] redis_timeout_ms must be between 1 and {MAX_REDIS_TIMEOUT_MS}"));
    }
    let lease_s = raw.lease_s.unwrap_or(60);
    if !(1..=MAX_LEASE_S).contains(&lease_s) {
        return Err(format!("[quotas] lease_s must be between 1 and {MAX_LEASE_S}"));
    }
    Ok(RedisQuotaConfig {
        url,
        key_prefix,
        timeout: Duration::from_millis(timeout_ms),
        lease: Duration::from_secs(lease_s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<(QuotaPolicy, QuotaStore), String> {
        let raw: RawQuotas = toml::from_str(text).expect("toml");
        quotas(raw, |name| (name == "REDIS_URL").then(|| "redis://:hunter2@10.0.0.5:6380/2".to_owned()))
    }

    #[test]
    fn memory_is_the_default_and_the_budgets_are_off_unless_set() {
        let (policy, store) = read("").expect("empty");
        assert_eq!((policy, store), (QuotaPolicy::default(), QuotaStore::Memory));
        let (policy, _) = read("cost_per_minute = 100\nrows_per_hour = 5000\nbytes_per_hour = 1000000").expect("set");
        assert_eq!(
            (policy.cost_per_minute(), policy.rows_per_hour(), policy.bytes_per_hour()),
            (Some(100), Some(5000), Some(1_000_000))
        );
    }

    #[test]
    fn redis_reads_its_url_from_the_environment_and_never_shows_it() {
        let (_, store) = read("backend = \"redis\"\nredis_url_env = \"REDIS_URL\"").expect("redis");
        let QuotaStore::Redis(redis) = store else { panic!("redis") };
        assert_eq!(redis.url, "redis://:hunter2@10.0.0.5:6380/2");
        assert_eq!(
            (redis.key_prefix.as_str(), redis.timeout, redis.lease),
            ("sqlwarden:", Duration::from_millis(50), Duration::from_secs(60))
        );
        assert!(!format!("{redis:?}").contains("hunter2"));
    }

    #[test]
    fn bad_quota_settings_are_refused_by_name_without_the_url() {
        for (text, expected) in [
            ("backend = \"etcd\"", "backend must be"),
            ("redis_url = \"redis://x\"", "redis_url is set but backend is \"memory\""),
            ("lease_s = 5", "lease_s is set but backend"),
            ("backend = \"redis\"", "needs redis_url or redis_url_env"),
            ("backend = \"redis\"\nredis_url_env = \"NOPE\"", "NOPE, which is not set"),
            ("backend = \"redis\"\nredis_url = \"redis://a\"\nredis_url_env = \"REDIS_URL\"", "keep one"),
            ("backend = \"redis\"\nredis_url = \"http://:hunter2@a\"", "must start with redis://"),
            ("backend = \"redis\"\nredis_url = \"rediss://:hunter2@a\"", "not supported yet"),
            ("backend = \"redis\"\nredis_url = \"hunter2\"", "not a URL"),
            ("backend = \"redis\"\nredis_url = \"redis://a\"\nredis_timeout_ms = 0", "redis_timeout_ms must be"),
            ("backend = \"redis\"\nredis_url = \"redis://a\"\nlease_s = 0", "lease_s must be"),
            ("backend = \"redis\"\nredis_url = \"redis://a\"\nkey_prefix = \"a{b}\"", "key_prefix must"),
            ("cost_per_minute = 0", "cost_per_minute` must be at least 1"),
            ("rows_per_hour = 0", "rows_per_hour` must be at least 1"),
            ("bytes_per_hour = 0", "bytes_per_hour` must be at least 1"),
        ] {
            let error = read(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
            assert!(!error.contains("hunter2"), "{text}: {error}");
        }
    }
}
