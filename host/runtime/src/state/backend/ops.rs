//! The state primitives on Redis, one round trip each: the rate limit's
//! leaky bucket, counters and sliding windows here, kv in `kv_ops` and the
//! ban list in `ban_ops`, each an atomic Lua script run by SHA (`EVALSHA`, loaded again on `NOSCRIPT` by
//! `redis::Script`). Called by the host imports in `exact` mode, by the
//! `sync` mode's rounds (counters and windows) and by the ban endpoints; every function answers `None` when the backend is down
//! or slow ([`RedisState::run`]), and the caller decides on local state.
//!
//! Keys (`P` = `key_prefix`, `N` = the plugin's state namespace, lengths
//! before names so no two keys collide): `P rl:|N|N:|zone|zone:rate:key`
//! (hash `e` excess, `l` last; TTL = drain time + 60 s), `P c:|N|N:key`,
//! `P w:|N|N:key` (sorted set of event times; TTL = the window), `P bans`
//! (hash `|jail|jail key` -> "since expires failures offences"; its TTL is
//! the longest ban's), `P bans:lifted` (hash of unban times, 24 h),
//! `P off:|jail|jail key` (offences, ban length + 24 h), `P kv:|N|N:key`
//! (the value after a one-byte tag: `e` it expires at its `ttl-ms`, `n` it
//! was set with `ttl-ms` 0). Counters and kv entries with no TTL get
//! [`IDLE_TTL_MS`] (from the last write; a kv read refreshes it too) so
//! Redis memory stays bounded, and `kv-ttl` still says 0 (never) of them.

use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};

use redis::Script;

use super::RedisState;
use crate::state::rate_limiter::RateDecision;

/// The TTL of a counter or kv entry written with `ttl-ms` 0 (never): 7
/// days idle.
pub(crate) const IDLE_TTL_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// nginx's leaky bucket, as `state/rate_limiter.rs` has it, to the integer.
/// KEYS: bucket. ARGV: rate_milli, burst_milli, delay_milli, now_ms.
/// Returns {0 pass | 1 delay | 2 reject, ms}.
static RATE_LIMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local delay = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local b = redis.call('HMGET', KEYS[1], 'e', 'l')
if not b[1] then
  redis.call('HSET', KEYS[1], 'e', 0, 'l', now)
  redis.call('PEXPIRE', KEYS[1], 60000)
  return {0, 0}
end
local excess = tonumber(b[1])
local last = tonumber(b[2])
local elapsed = 0
if now >= last then elapsed = now - last elseif last - now > 60000 then elapsed = 1 end
local e = excess + 1000 - math.floor(rate * elapsed / 1000)
if e < 0 then e = 0 end
if e > burst then
  local needed = excess + 1000 - math.min(burst, excess + 1000)
  local wait = math.ceil(needed * 1000 / rate) - elapsed
  if wait < 1 then wait = 1 end
  return {2, wait}
end
redis.call('HSET', KEYS[1], 'e', e)
if elapsed ~= 0 then redis.call('HSET', KEYS[1], 'l', now) end
redis.call('PEXPIRE', KEYS[1], math.ceil(e * 1000 / rate) + 60000)
if e <= delay then return {0, 0} end
return {1, math.floor((e - delay) * 1000 / rate)}
",
    )
});

/// KEYS: counter. ARGV: delta, ttl_ms. Returns the new value.
static COUNTER_INCR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return v
",
    )
});

/// KEYS: window. ARGV: now, window_ms, max_events, member. Returns the
/// events within the window, this one included.
static WINDOW_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[3]) + 1))
redis.call('PEXPIRE', KEYS[1], window)
return redis.call('ZCARD', KEYS[1])
",
    )
});

/// `name` with its length before it: no two (name, rest) pairs collide.
pub(super) fn part(name: &str) -> String {
    format!("|{}|{name}", name.len())
}

impl RedisState {
    pub(super) fn key(&self, kind: &str, namespace: &str, rest: &str) -> String {
        format!("{}{kind}:{}:{rest}", self.prefix, part(namespace))
    }

    /// The counter `key` of `namespace` (`exact` mode and `sync` rounds).
    pub(crate) fn counter_key(&self, namespace: &str, key: &str) -> String {
        self.key("c", namespace, key)
    }

    /// The sliding window `key` of `namespace` (`exact` mode and `sync`
    /// rounds).
    pub(crate) fn window_key(&self, namespace: &str, key: &str) -> String {
        self.key("w", namespace, key)
    }

    /// A window event's member: unique across machines.
    pub(crate) fn window_member(&self, now_ms: u64) -> String {
        format!(
            "{now_ms}:{:x}:{}",
            self.instance_id,
            self.sequence.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The `sync` mode's shared bucket of (zone, rate, key) in `namespace`.
    pub(crate) fn synced_bucket_key(
        &self,
        namespace: &str,
        zone: &str,
        rate: u64,
        key: &str,
    ) -> String {
        self.key("rls", namespace, &format!("{}:{rate}:{key}", part(zone)))
    }

    /// The bucket key of (zone, rate, key) in `namespace`.
    pub(crate) fn bucket_key(&self, namespace: &str, zone: &str, rate: u64, key: &str) -> String {
        self.key("rl", namespace, &format!("{}:{rate}:{key}", part(zone)))
    }

    pub(crate) async fn rate_limit(
        self: &Arc<Self>,
        bucket: String,
        rate_milli: u64,
        burst: u32,
        delay: u32,
        now_ms: u64,
    ) -> Option<RateDecision> {
        let (verdict, ms): (u8, u64) = self
            .run(|mut conn| async move {
                RATE_LIMIT
                    .key(bucket)
                    .arg(rate_milli.max(1))
                    .arg(u64::from(burst) * 1000)
                    .arg(u64::from(delay) * 1000)
                    .arg(now_ms)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        let ms = u32::try_from(ms).unwrap_or(u32::MAX);
        Some(match verdict {
            0 => RateDecision::Pass,
            1 => RateDecision::Delay(ms),
            _ => RateDecision::Reject(ms),
        })
    }

    pub(crate) async fn counter_incr(
        self: &Arc<Self>,
        namespace: &str,
        key: &str,
        delta: i64,
        ttl_ms: u64,
    ) -> Option<i64> {
        let k = self.counter_key(namespace, key);
        let ttl = if ttl_ms == 0 { IDLE_TTL_MS } else { ttl_ms };
        self.run(|mut conn| async move {
            COUNTER_INCR
                .key(k)
                .arg(delta)
                .arg(ttl)
                .invoke_async(&mut conn)
                .await
        })
        .await
    }

    pub(crate) async fn counter_get(self: &Arc<Self>, namespace: &str, key: &str) -> Option<i64> {
        let k = self.counter_key(namespace, key);
        let value: Option<i64> = self
            .run(|mut conn| async move {
                redis::cmd("GET")
                    .arg(k)
                    .query_async::<Option<i64>>(&mut conn)
                    .await
            })
            .await?;
        Some(value.unwrap_or(0))
    }

    pub(crate) async fn window_add(
        self: &Arc<Self>,
        namespace: &str,
        key: &str,
        now_ms: u64,
        window_ms: u64,
        max_events: u32,
    ) -> Option<u32> {
        let k = self.window_key(namespace, key);
        let member = self.window_member(now_ms);
        self.window_push(k, now_ms, window_ms, max_events, member)
            .await
    }

    /// Adds one event (`member` at `at_ms`) to the window at `k` as
    /// `window-add` does; the events within the window after it.
    pub(crate) async fn window_push(
        self: &Arc<Self>,
        k: String,
        at_ms: u64,
        window_ms: u64,
        max_events: u32,
        member: String,
    ) -> Option<u32> {
        self.run(|mut conn| async move {
            WINDOW_ADD
                .key(k)
                .arg(at_ms)
                .arg(window_ms)
                .arg(max_events)
                .arg(member)
                .invoke_async(&mut conn)
                .await
        })
        .await
    }

    pub(crate) async fn window_count(
        self: &Arc<Self>,
        namespace: &str,
        key: &str,
        now_ms: u64,
        window_ms: u64,
    ) -> Option<u32> {
        let k = self.window_key(namespace, key);
        // Events in (now - window, now], as the local windows count.
        let from = format!("({}", now_ms.saturating_sub(window_ms));
        self.run(|mut conn| async move {
            redis::cmd("ZCOUNT")
                .arg(k)
                .arg(from)
                .arg("+inf")
                .query_async(&mut conn)
                .await
        })
        .await
    }

    /// The times of the events of the window at `k` within the last
    /// `window_ms` at `now_ms`, oldest first (what a `sync` round pulls).
    pub(crate) async fn window_times(
        self: &Arc<Self>,
        k: String,
        now_ms: u64,
        window_ms: u64,
    ) -> Option<Vec<u64>> {
        let from = format!("({}", now_ms.saturating_sub(window_ms));
        let events: Vec<(String, f64)> = self
            .run(|mut conn| async move {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(k)
                    .arg(from)
                    .arg("+inf")
                    .arg("WITHSCORES")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Some(events.into_iter().map(|(_, t)| t as u64).collect())
    }

    pub(crate) async fn window_reset(self: &Arc<Self>, namespace: &str, key: &str) -> Option<()> {
        let k = self.window_key(namespace, key);
        self.run(
            |mut conn| async move { redis::cmd("DEL").arg(k).query_async::<i64>(&mut conn).await },
        )
        .await
        .map(|_| ())
    }
}
