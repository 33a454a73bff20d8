//! kv on Redis (`exact` mode): `kv-get`, `kv-set`, `kv-delete`,
//! `kv-set-if-absent`, `kv-compare-and-set` and `kv-ttl`, each one round
//! trip (a command, or a Lua script by SHA), on keys `P kv:|N|N:key` (see
//! `ops`). The value is stored after a one-byte tag: `e` it expires at its
//! `ttl-ms`, `n` it was set with `ttl-ms` 0 and is kept [`IDLE_TTL_MS`] from
//! its last use, so `kv-ttl` still says 0 (never) of it.

use std::sync::{Arc, LazyLock};

use redis::Script;

use super::ops::IDLE_TTL_MS;
use super::RedisState;

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

impl RedisState {
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
}
