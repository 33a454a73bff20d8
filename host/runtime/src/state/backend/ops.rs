//! The state primitives on Redis, one round trip each: the rate limit's
//! leaky bucket, counters, sliding windows and the ban list, each an atomic
//! Lua script run by SHA (`EVALSHA`, loaded again on `NOSCRIPT` by
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
use crate::state::bans::{BanEntry, BanOutcome, BanRequest, OFFENCE_RETENTION_MS};
use crate::state::rate_limiter::RateDecision;

/// The TTL of a counter or kv entry written with `ttl-ms` 0 (never): 7
/// days idle.
pub(crate) const IDLE_TTL_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// The tag before a kv value that expires at its `ttl-ms`.
const KV_EXPIRES: u8 = b'e';
/// The tag before a kv value set with `ttl-ms` 0: kept while used.
const KV_KEPT: u8 = b'n';

/// KEYS: kv. ARGV: idle ttl. Returns the tagged value (nil if absent);
/// a kept (`n`) value's idle TTL starts again.
static KV_GET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if v and string.byte(v, 1) == 110 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return v
",
    )
});

/// KEYS: kv. ARGV: 1 expect a value | 0 expect absence, the expected value
/// (untagged), the new tagged value, its ttl. Returns 1 if it was set.
static KV_COMPARE_AND_SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if not cur or string.sub(cur, 2) ~= ARGV[2] then return 0 end
elseif cur then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
return 1
",
    )
});

/// KEYS: kv. Returns -2 absent, -1 never expires (a kept value, or one
/// without a TTL), else the ms left.
static KV_TTL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('PTTL', KEYS[1])
if t == -2 then return -2 end
if t == -1 or redis.call('GETRANGE', KEYS[1], 0, 0) == 'n' then return -1 end
return t
",
    )
});

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

/// KEYS: bans, offences, lifted. ARGV: field, now, duration_ms, factor,
/// max_ms, failures, offence retention ms. Returns {1 banned | 0 already, "since expires failures offences"}.
static BAN_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = tonumber(ARGV[2])
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and tonumber(string.match(cur, '^%d+ (%d+)')) > now then return {0, cur} end
local off = redis.call('INCR', KEYS[2])
local len = math.floor(tonumber(ARGV[3]) * tonumber(ARGV[4]) ^ (off - 1))
local max = tonumber(ARGV[5])
if max > 0 and len > max then len = max end
if len < 1 then len = 1 end
local v = string.format('%d %d %d %d', now, now + len, tonumber(ARGV[6]), off)
redis.call('HSET', KEYS[1], ARGV[1], v)
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('PEXPIRE', KEYS[2], len + tonumber(ARGV[7]))
if redis.call('PTTL', KEYS[1]) < len then redis.call('PEXPIRE', KEYS[1], len) end
return {1, v}
",
    )
});

/// KEYS: bans, lifted. ARGV: field, now, [local since, local value].
/// Returns {1, value} banned; {0, ''} not; {2, ''} the local ban was
/// lifted elsewhere; {3, ''} the local ban (made while Redis was away) was
/// written back: it stands.
static BAN_CHECK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = tonumber(ARGV[2])
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then
  if tonumber(string.match(v, '^%d+ (%d+)')) > now then return {1, v} end
  redis.call('HDEL', KEYS[1], ARGV[1])
end
if ARGV[3] then
  local lifted = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '-1')
  if lifted >= tonumber(ARGV[3]) then return {2, ''} end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
  local left = tonumber(string.match(ARGV[4], '^%d+ (%d+)')) - now
  if redis.call('PTTL', KEYS[1]) < left then redis.call('PEXPIRE', KEYS[1], left) end
  return {3, ''}
end
return {0, ''}
",
    )
});

/// KEYS: bans, lifted. ARGV: field, now. Returns 1 when a live ban went.
static BAN_REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], 86400000)
if v and tonumber(string.match(v, '^%d+ (%d+)')) > tonumber(ARGV[2]) then return 1 end
return 0
",
    )
});

/// KEYS: bans, lifted. ARGV: now. Drops expired bans and day-old unban
/// marks; returns {bans field/value..., '', lifted field/time...}.
static BAN_LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = tonumber(ARGV[1])
local out = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if tonumber(string.match(all[i + 1], '^%d+ (%d+)')) > now then
    out[#out + 1] = all[i]; out[#out + 1] = all[i + 1]
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
out[#out + 1] = ''
local lifted = redis.call('HGETALL', KEYS[2])
for i = 1, #lifted, 2 do
  if tonumber(lifted[i + 1]) + 86400000 < now then
    redis.call('HDEL', KEYS[2], lifted[i])
  else
    out[#out + 1] = lifted[i]; out[#out + 1] = lifted[i + 1]
  end
end
return out
",
    )
});

/// A kv value as stored (its tag first) and the TTL it is stored with.
fn kv_tagged(value: &[u8], ttl_ms: u64) -> (Vec<u8>, u64) {
    let (tag, ttl) = if ttl_ms == 0 {
        (KV_KEPT, IDLE_TTL_MS)
    } else {
        (KV_EXPIRES, ttl_ms)
    };
    let mut tagged = Vec::with_capacity(value.len() + 1);
    tagged.push(tag);
    tagged.extend_from_slice(value);
    (tagged, ttl)
}

/// `name` with its length before it: no two (name, rest) pairs collide.
fn part(name: &str) -> String {
    format!("|{}|{name}", name.len())
}

fn ban_field(jail: &str, key: &str) -> String {
    format!("{} {key}", part(jail))
}

fn parse_ban_field(field: &str) -> Option<(String, String)> {
    let rest = field.strip_prefix('|')?;
    let (len, rest) = rest.split_once('|')?;
    let len: usize = len.parse().ok()?;
    let jail = rest.get(..len)?;
    let key = rest.get(len..)?.strip_prefix(' ')?;
    Some((jail.to_owned(), key.to_owned()))
}

/// The stored form of a ban's numbers.
pub(crate) fn ban_value(ban: &BanEntry) -> String {
    format!(
        "{} {} {} {}",
        ban.since_unix_ms, ban.expires_unix_ms, ban.failures, ban.offences
    )
}

fn parse_ban(jail: &str, key: &str, value: &str) -> Option<BanEntry> {
    let mut numbers = value.split(' ').map(str::parse::<u64>);
    let mut next = || numbers.next()?.ok();
    Some(BanEntry {
        jail: jail.to_owned(),
        key: key.to_owned(),
        since_unix_ms: next()?,
        expires_unix_ms: next()?,
        failures: u32::try_from(next()?).ok()?,
        offences: u32::try_from(next()?).ok()?,
    })
}

/// What the shared ban list says of one (jail, key) in `ban_check`.
pub(crate) enum SharedBan {
    Banned(BanEntry),
    NotBanned,
    /// The local ban was lifted on another machine.
    Lifted,
    /// The local ban was missing there (made while Redis was away) and has
    /// been written back: it stands.
    Kept,
}

/// Every live shared ban, and the recent unbans (field -> time).
pub(crate) struct SharedBanList {
    pub(crate) bans: Vec<BanEntry>,
    pub(crate) lifted: Vec<(String, String, u64)>,
}

impl RedisState {
    fn key(&self, kind: &str, namespace: &str, rest: &str) -> String {
        format!("{}{kind}:{}:{rest}", self.prefix, part(namespace))
    }

    fn bans_key(&self) -> String {
        format!("{}bans", self.prefix)
    }

    fn lifted_key(&self) -> String {
        format!("{}bans:lifted", self.prefix)
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

    /// `kv-get`.
    pub(crate) async fn kv_get(
        self: &Arc<Self>,
        namespace: &str,
        key: &str,
    ) -> Option<Option<Vec<u8>>> {
        let k = self.key("kv", namespace, key);
        let tagged: Option<Vec<u8>> =
            self.run(|mut conn| async move {
                KV_GET.key(k).arg(IDLE_TTL_MS).invoke_async(&mut conn).await
            })
            .await?;
        Some(tagged.map(|mut v| {
            if !v.is_empty() {
                v.remove(0);
            }
            v
        }))
    }

    /// `kv-set`: `SET PX`.
    pub(crate) async fn kv_set(
        self: &Arc<Self>,
        namespace: &str,
        key: &str,
        value: &[u8],
        ttl_ms: u64,
    ) -> Option<()> {
        let k = self.key("kv", namespace, key);
        let (tagged, ttl) = kv_tagged(value, ttl_ms);
        self.run(|mut conn| async move {
            redis::cmd("SET")
                .arg(k)
                .arg(tagged)
                .arg("PX")
                .arg(ttl)
                .query_async::<redis::Value>(&mut conn)
                .await
        })
        .await
        .map(|_| ())
    }

    /// `kv-delete`: true if it was there.
    pub(crate) async fn kv_delete(self: &Arc<Self>, namespace: &str, key: &str) -> Option<bool> {
        let k = self.key("kv", namespace, key);
        let removed: i64 = self
            .run(|mut conn| async move { redis::cmd("DEL").arg(k).query_async(&mut conn).await })
            .await?;
        Some(removed > 0)
    }

    /// `kv-set-if-absent`: `SET NX PX`; true if it stored the value.
    pub(crate) async fn kv_set_if_absent(
        self: &Arc<Self>,
        namespace: &str,
        key: &str,
        value: &[u8],
        ttl_ms: u64,
    ) -> Option<bool> {
        let k = self.key("kv", namespace, key);
        let (tagged, ttl) = kv_tagged(value, ttl_ms);
        let answer: redis::Value = self
            .run(|mut conn| async move {
                redis::cmd("SET")
                    .arg(k)
                    .arg(tagged)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Some(!matches!(answer, redis::Value::Nil))
    }

    /// `kv-compare-and-set`: true if the value was `expected` (`None`:
    /// absent) and is now `value`.
    pub(crate) async fn kv_compare_and_set(
        self: &Arc<Self>,
        namespace: &str,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        ttl_ms: u64,
    ) -> Option<bool> {
        let k = self.key("kv", namespace, key);
        let (tagged, ttl) = kv_tagged(value, ttl_ms);
        let (expect, expected) = match expected {
            Some(v) => ("1", v.to_vec()),
            None => ("0", Vec::new()),
        };
        let set: u8 = self
            .run(|mut conn| async move {
                KV_COMPARE_AND_SET
                    .key(k)
                    .arg(expect)
                    .arg(expected)
                    .arg(tagged)
                    .arg(ttl)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Some(set == 1)
    }

    /// `kv-ttl`: `None` absent, `Some(0)` never expires, else ms left.
    pub(crate) async fn kv_ttl(
        self: &Arc<Self>,
        namespace: &str,
        key: &str,
    ) -> Option<Option<u64>> {
        let k = self.key("kv", namespace, key);
        let ttl: i64 = self
            .run(|mut conn| async move { KV_TTL.key(k).invoke_async(&mut conn).await })
            .await?;
        Some(match ttl {
            -2 => None,
            t if t < 0 => Some(0),
            t => Some((t as u64).max(1)),
        })
    }

    pub(crate) async fn ban_add(
        self: &Arc<Self>,
        jail: &str,
        key: &str,
        request: &BanRequest,
        now_ms: u64,
    ) -> Option<BanOutcome> {
        let (keys, field) = (
            [
                self.bans_key(),
                format!("{}off:{}", self.prefix, ban_field(jail, key)),
                self.lifted_key(),
            ],
            ban_field(jail, key),
        );
        let factor = if request.increment_factor.is_finite() && request.increment_factor >= 1.0 {
            request.increment_factor
        } else {
            1.0
        };
        let (banned, value): (u8, String) = self
            .run(|mut conn| async move {
                BAN_ADD
                    .key(&keys[..])
                    .arg(field)
                    .arg(now_ms)
                    .arg(request.duration_ms.max(1))
                    .arg(factor)
                    .arg(request.max_duration_ms)
                    .arg(request.failures)
                    .arg(OFFENCE_RETENTION_MS)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        let ban = parse_ban(jail, key, &value)?;
        Some(if banned == 1 {
            BanOutcome::Banned(ban)
        } else {
            BanOutcome::Already(ban)
        })
    }

    /// The shared ban of (jail, key); `local` is this machine's own, written
    /// back unless it was lifted elsewhere since it began.
    pub(crate) async fn ban_check(
        self: &Arc<Self>,
        jail: &str,
        key: &str,
        local: Option<&BanEntry>,
        now_ms: u64,
    ) -> Option<SharedBan> {
        let keys = [self.bans_key(), self.lifted_key()];
        let field = ban_field(jail, key);
        let local = local.map(|ban| (ban.since_unix_ms, ban_value(ban)));
        let (verdict, value): (u8, String) = self
            .run(|mut conn| async move {
                let mut call = BAN_CHECK.key(&keys[..]);
                call.arg(field).arg(now_ms);
                if let Some((since, value)) = local {
                    call.arg(since).arg(value);
                }
                call.invoke_async(&mut conn).await
            })
            .await?;
        Some(match verdict {
            1 => SharedBan::Banned(parse_ban(jail, key, &value)?),
            2 => SharedBan::Lifted,
            3 => SharedBan::Kept,
            _ => SharedBan::NotBanned,
        })
    }

    /// Lifts the shared ban and marks it lifted for the other machines;
    /// true when a live ban was there.
    pub(crate) async fn ban_remove(
        self: &Arc<Self>,
        jail: &str,
        key: &str,
        now_ms: u64,
    ) -> Option<bool> {
        let keys = [self.bans_key(), self.lifted_key()];
        let field = ban_field(jail, key);
        let removed: u8 = self
            .run(|mut conn| async move {
                BAN_REMOVE
                    .key(&keys[..])
                    .arg(field)
                    .arg(now_ms)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Some(removed == 1)
    }

    /// Every live shared ban and the unbans of the last day.
    pub(crate) async fn ban_list(self: &Arc<Self>, now_ms: u64) -> Option<SharedBanList> {
        let keys = [self.bans_key(), self.lifted_key()];
        let flat: Vec<String> = self
            .run(|mut conn| async move {
                BAN_LIST
                    .key(&keys[..])
                    .arg(now_ms)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        let split = flat.iter().position(String::is_empty)?;
        let bans = flat[..split]
            .chunks_exact(2)
            .filter_map(|pair| {
                let (jail, key) = parse_ban_field(&pair[0])?;
                parse_ban(&jail, &key, &pair[1])
            })
            .collect();
        let lifted = flat[split + 1..]
            .chunks_exact(2)
            .filter_map(|pair| {
                let (jail, key) = parse_ban_field(&pair[0])?;
                Some((jail, key, pair[1].parse().ok()?))
            })
            .collect();
        Some(SharedBanList { bans, lifted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_fields_round_trip_whatever_the_names() {
        for (jail, key) in [("ssh", "192.0.2.1"), ("a b|3|", " x|y "), ("", "")] {
            let field = ban_field(jail, key);
            assert_eq!(
                parse_ban_field(&field),
                Some((jail.to_owned(), key.to_owned()))
            );
        }
        let ban = BanEntry {
            jail: "j".into(),
            key: "k".into(),
            since_unix_ms: 1_700_000_000_000,
            expires_unix_ms: 1_700_000_600_000,
            failures: 5,
            offences: 2,
        };
        assert_eq!(parse_ban("j", "k", &ban_value(&ban)), Some(ban));
    }
}
