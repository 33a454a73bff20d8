//! `[state]`: the plugin runtime's state directory, the caps on plugin
//! host state (counters, kv, sliding windows, rate-limit keys, bans) and
//! the shared backend (`backend = "redis"`, its `url` checked against
//! `[tailnet] allow`), raw table and build step. Read at config load; applied at start (a reload
//! that changes it needs a restart, `crate::reload` says so).

use std::path::Path;

use serde::Deserialize;
use tailgate_runtime::{Consistency, RedisConfig, StateLimits};
use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind, Source};
use super::model::state::{
    StateConfig, DEFAULT_BACKEND_TIMEOUT, DEFAULT_KEY_PREFIX, DEFAULT_POOL_SIZE, DEFAULT_STATE_DIR,
    DEFAULT_SYNC_INTERVAL,
};
use super::model::tailnet::{allowlist_permits, TailnetConfig};
use super::raw::RawSize;
use super::values::parse_duration;

/// Largest `max_key_size` (keys are names, not payloads), and as written.
const MAX_KEY_SIZE: (u64, &str) = (64 * 1024, "64KiB");
/// Largest `max_kv_value_size`, and as written.
const MAX_KV_VALUE_SIZE: (u64, &str) = (16 * 1024 * 1024, "16MiB");

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub dir: Option<Spanned<String>>,
    pub max_bans: Option<Spanned<usize>>,
    pub max_counters: Option<Spanned<usize>>,
    pub max_kv_entries: Option<Spanned<usize>>,
    pub max_kv_value_size: Option<Spanned<RawSize>>,
    pub max_windows: Option<Spanned<usize>>,
    pub max_keys_per_zone: Option<Spanned<usize>>,
    pub max_key_size: Option<Spanned<RawSize>>,
    pub backend: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub key_prefix: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub pool_size: Option<Spanned<usize>>,
    pub consistency: Option<Spanned<String>>,
    pub sync_interval: Option<Spanned<String>>,
}

pub(super) fn build_state(
    src: &Source<'_>,
    base_dir: &Path,
    tailnet: &TailnetConfig,
    mut raw: RawState,
) -> Result<StateConfig, ConfigError> {
    let redis = build_backend(src, tailnet, &mut raw)?;
    let dir = super::folder_key(src, base_dir, raw.dir, "state.dir", DEFAULT_STATE_DIR)?;
    let d = StateLimits::default();
    let count = |raw: Option<Spanned<usize>>, key: &'static str, default: usize| match raw {
        None => Ok(default),
        Some(n) if *n.get_ref() >= 1 => Ok(n.into_inner()),
        Some(n) => Err(src.error(n.span(), None, ConfigErrorKind::AtLeastOne(key))),
    };
    let size = |raw: Option<Spanned<RawSize>>, key, (max, max_text): (u64, &str), default| {
        let Some(raw) = raw else {
            return Ok(default);
        };
        let bytes = src.at(raw.span(), None, raw.get_ref().bytes())?;
        if !(1..=max).contains(&bytes) {
            let reason = format!("{} must be between 1 byte and {max_text}", raw.get_ref());
            return Err(src.error(raw.span(), None, ConfigErrorKind::Invalid { key, reason }));
        }
        Ok(usize::try_from(bytes).unwrap_or(usize::MAX))
    };
    let limits = StateLimits {
        max_key_bytes: size(
            raw.max_key_size,
            "max_key_size",
            MAX_KEY_SIZE,
            d.max_key_bytes,
        )?,
        max_counters: count(raw.max_counters, "max_counters", d.max_counters)?,
        max_kv_entries: count(raw.max_kv_entries, "max_kv_entries", d.max_kv_entries)?,
        max_kv_value_bytes: size(
            raw.max_kv_value_size,
            "max_kv_value_size",
            MAX_KV_VALUE_SIZE,
            d.max_kv_value_bytes,
        )?,
        max_zones: d.max_zones,
        max_keys_per_zone: count(
            raw.max_keys_per_zone,
            "max_keys_per_zone",
            d.max_keys_per_zone,
        )?,
        max_windows: count(raw.max_windows, "max_windows", d.max_windows)?,
        max_bans: count(raw.max_bans, "max_bans", d.max_bans)?,
    };
    Ok(StateConfig { dir, limits, redis })
}

fn invalid(
    src: &Source<'_>,
    span: std::ops::Range<usize>,
    key: &'static str,
    reason: String,
) -> ConfigError {
    src.error(span, None, ConfigErrorKind::Invalid { key, reason })
}

/// `backend`, `url`, `key_prefix`, `timeout`, `pool_size`, `consistency`,
/// `sync_interval`: `None` for the local backend (the Redis keys are then
/// errors, so a typo'd `backend` does not silently keep state local).
fn build_backend(
    src: &Source<'_>,
    tailnet: &TailnetConfig,
    raw: &mut RawState,
) -> Result<Option<RedisConfig>, ConfigError> {
    let backend = raw.backend.take();
    match backend.as_ref().map(|b| b.get_ref().as_str()) {
        None | Some("local") => {
            let stray = [
                &raw.url,
                &raw.key_prefix,
                &raw.timeout,
                &raw.consistency,
                &raw.sync_interval,
            ]
            .into_iter()
            .flatten()
            .next();
            if let Some(stray) = stray {
                let reason = "is only for backend = \"redis\"".to_owned();
                return Err(invalid(src, stray.span(), "state", reason));
            }
            return Ok(None);
        }
        Some("redis") => {}
        Some(other) => {
            let reason = format!("{other:?}: expected \"local\" or \"redis\"");
            let span = backend.as_ref().map_or(0..0, Spanned::span);
            return Err(invalid(src, span, "backend", reason));
        }
    }
    let Some(url) = raw.url.take() else {
        let span = backend.as_ref().map_or(0..0, Spanned::span);
        let reason = "backend = \"redis\" needs a url".to_owned();
        return Err(invalid(src, span, "url", reason));
    };
    let expanded = expand_env(url.get_ref()).map_err(|r| invalid(src, url.span(), "url", r))?;
    let (host, port) = redis_target(&expanded).map_err(|r| invalid(src, url.span(), "url", r))?;
    if !allowlist_permits(tailnet.allow.as_deref(), &host, port) {
        return Err(src.error(
            url.span(),
            None,
            ConfigErrorKind::TargetNotAllowed {
                target: format!("{host}:{port}"),
            },
        ));
    }
    let duration = |raw: Option<Spanned<String>>, key, default| match raw {
        None => Ok(default),
        Some(t) => {
            let d = src.at(t.span(), None, parse_duration(t.get_ref()))?;
            if d.is_zero() {
                return Err(invalid(src, t.span(), key, "must be above 0".into()));
            }
            Ok(d)
        }
    };
    let timeout = duration(raw.timeout.take(), "timeout", DEFAULT_BACKEND_TIMEOUT)?;
    let interval = duration(
        raw.sync_interval.take(),
        "sync_interval",
        DEFAULT_SYNC_INTERVAL,
    )?;
    let consistency = match raw.consistency.take() {
        None => Consistency::Exact,
        Some(c) => match c.get_ref().as_str() {
            "exact" => Consistency::Exact,
            "sync" => Consistency::Sync(interval),
            other => {
                let reason = format!("{other:?}: expected \"exact\" or \"sync\"");
                return Err(invalid(src, c.span(), "consistency", reason));
            }
        },
    };
    let pool_size = match raw.pool_size.take() {
        None => DEFAULT_POOL_SIZE,
        Some(n) if (1..=64).contains(n.get_ref()) => n.into_inner(),
        Some(n) => {
            return Err(invalid(
                src,
                n.span(),
                "pool_size",
                "must be between 1 and 64".into(),
            ))
        }
    };
    Ok(Some(RedisConfig {
        url: expanded,
        key_prefix: raw
            .key_prefix
            .take()
            .map_or_else(|| DEFAULT_KEY_PREFIX.to_owned(), Spanned::into_inner),
        timeout,
        pool_size,
        consistency,
    }))
}

/// `${NAME}` replaced by the environment variable NAME (credentials kept
/// out of the config file); an unset variable is an error.
fn expand_env(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or("unclosed ${")?;
        let name = &after[..end];
        let value =
            std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The host (lower case, IPv6 in brackets) and port of a `redis://` or
/// `rediss://` url (6379 by default).
fn redis_target(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
        .ok_or("expected redis:// or rediss://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if hostport.starts_with('[') {
        let close = hostport.find(']').ok_or("unclosed [ in host")?;
        (&hostport[..=close], hostport[close + 1..].strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port = match port {
        None => 6379,
        Some(p) => p
            .parse()
            .map_err(|_| format!("port {p:?} is not a number"))?,
    };
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    fn parse(section: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.u]\nurl = \"http://127.0.0.1:9\"\n\
             [[routes]]\nname = \"r\"\nhosts = [\"*\"]\npath = \"/\"\nupstream = \"u\"\n{section}"
        );
        crate::config::parse(&text, std::path::Path::new("/etc/tailgate/config.toml"))
    }

    #[test]
    fn defaults_sit_beside_the_config_file() {
        let config = parse("").expect("config");
        assert_eq!(
            config.state.dir,
            PathBuf::from("/etc/tailgate/.tailgate/state")
        );
        assert_eq!(
            config.state.limits,
            tailgate_runtime::StateLimits::default()
        );
        assert_eq!(config.state.limits.max_bans, 100_000);
    }

    #[test]
    fn keys_set_the_caps() {
        let config = parse(
            "[state]\ndir = \"/var/lib/tailgate\"\nmax_bans = 10\nmax_counters = 11\n\
             max_kv_entries = 12\nmax_kv_value_size = \"8KiB\"\nmax_windows = 13\n\
             max_keys_per_zone = 14\nmax_key_size = 256\n",
        )
        .expect("config");
        let limits = config.state.limits;
        assert_eq!(config.state.dir, PathBuf::from("/var/lib/tailgate"));
        assert_eq!(
            (limits.max_bans, limits.max_counters, limits.max_kv_entries),
            (10, 11, 12)
        );
        assert_eq!((limits.max_windows, limits.max_keys_per_zone), (13, 14));
        assert_eq!(
            (limits.max_kv_value_bytes, limits.max_key_bytes),
            (8192, 256)
        );
    }

    #[test]
    fn redis_backend_keys() {
        let config = parse(
            "[state]\nbackend = \"redis\"\nurl = \"redis://:pw@Cache.internal:6380/0\"\n\
             timeout = \"20ms\"\npool_size = 3\nconsistency = \"sync\"\nsync_interval = \"250ms\"\n",
        )
        .expect("config");
        let redis = config.state.redis.expect("redis");
        assert_eq!(redis.url, "redis://:pw@Cache.internal:6380/0");
        assert_eq!(redis.key_prefix, "tailgate:");
        assert_eq!(redis.timeout, std::time::Duration::from_millis(20));
        assert_eq!(redis.pool_size, 3);
        assert_eq!(
            redis.consistency,
            tailgate_runtime::Consistency::Sync(std::time::Duration::from_millis(250))
        );
        let exact = parse("[state]\nbackend = \"redis\"\nurl = \"rediss://h\"\n")
            .expect("config")
            .state
            .redis
            .expect("redis");
        assert_eq!(exact.consistency, tailgate_runtime::Consistency::Exact);
        assert_eq!(exact.timeout, std::time::Duration::from_millis(50));
        assert_eq!(parse("").expect("config").state.redis, None);
    }

    #[test]
    fn redis_url_is_expanded_and_allowlisted() {
        std::env::set_var("TAILGATE_TEST_REDIS_PW", "s3cret");
        let config = parse(
            "[state]\nbackend = \"redis\"\nurl = \"redis://default:${TAILGATE_TEST_REDIS_PW}@10.0.0.5\"\n",
        )
        .expect("config");
        assert_eq!(
            config.state.redis.expect("redis").url,
            "redis://default:s3cret@10.0.0.5"
        );
        let err =
            parse("[state]\nbackend = \"redis\"\nurl = \"redis://${TAILGATE_TEST_UNSET_VAR}@h\"\n")
                .expect_err("unset");
        assert!(
            err.to_string()
                .contains("TAILGATE_TEST_UNSET_VAR is not set"),
            "{err}"
        );
        let err = parse(
            "[tailnet]\nallow = [\"127.0.0.1:9\"]\n[state]\nbackend = \"redis\"\nurl = \"redis://cache:6379\"\n",
        )
        .expect_err("not allowed");
        assert!(err.to_string().contains("cache:6379"), "{err}");
        for bad in [
            "backend = \"memcached\"\n",
            "backend = \"redis\"\n",
            "backend = \"redis\"\nurl = \"http://h\"\n",
            "backend = \"redis\"\nurl = \"redis://h\"\nconsistency = \"eventual\"\n",
            "url = \"redis://h\"\n",
        ] {
            assert!(parse(&format!("[state]\n{bad}")).is_err(), "{bad}");
        }
    }

    #[test]
    fn zero_caps_and_odd_sizes_are_errors() {
        let err = parse("[state]\nmax_bans = 0\n").expect_err("zero");
        assert!(
            err.to_string().ends_with("max_bans must be at least 1"),
            "{err}"
        );
        let err = parse("[state]\nmax_key_size = \"1MiB\"\n").expect_err("big key");
        assert!(
            err.to_string()
                .ends_with("`max_key_size`: \"1MiB\" must be between 1 byte and 64KiB"),
            "{err}"
        );
        let err = parse("[state]\ndir = \"\"\n").expect_err("empty dir");
        assert!(
            err.to_string().ends_with("state.dir must not be empty"),
            "{err}"
        );
        assert!(parse("[state]\nmax_bams = 1\n").is_err());
    }
}
