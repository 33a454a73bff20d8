//! The shared ban list on Redis: `ban-add`, `ban-check`, `ban-remove` and
//! the listing behind `GET /bans`, each a Lua script by SHA on the hash
//! `P bans` (`|jail|jail key` -> "since expires failures offences"; its TTL
//! is the longest ban's), `P bans:lifted` (recent unbans, 24 h) and the
//! offence counts `P off:|jail|jail key` (see `ops`). Used in `exact` mode,
//! by `sync` rounds and by the admin endpoints.

use std::sync::{Arc, LazyLock};

use redis::Script;

use super::ops::part;
use super::RedisState;
use crate::state::bans::{BanEntry, BanOutcome, BanRequest, OFFENCE_RETENTION_MS};

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
    fn bans_key(&self) -> String {
        format!("{}bans", self.prefix)
    }

    fn lifted_key(&self) -> String {
        format!("{}bans:lifted", self.prefix)
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
