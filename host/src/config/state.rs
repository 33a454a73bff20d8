//! `[state]`: the plugin runtime's state directory and the caps on plugin
//! host state (counters, kv, sliding windows, rate-limit keys, bans), raw
//! table and build step. Read at config load; applied at start (a reload
//! that changes it needs a restart, `crate::reload` says so).

use std::path::Path;

use serde::Deserialize;
use tailgate_runtime::StateLimits;
use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind, Source};
use super::model::state::{StateConfig, DEFAULT_STATE_DIR};
use super::raw::RawSize;

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
}

pub(super) fn build_state(
    src: &Source<'_>,
    base_dir: &Path,
    raw: RawState,
) -> Result<StateConfig, ConfigError> {
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
    Ok(StateConfig { dir, limits })
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
