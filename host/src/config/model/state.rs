//! The validated `[state]` section: where the plugin runtime keeps state
//! that outlives the process (the ban list's `bans.json`), the caps on
//! plugin host state, and the shared backend (Redis) if any. Built by
//! `config::state` at load; applied when the plugin runtime starts
//! (`crate::cli`): a reload that changes it warns that a restart is needed.

use std::path::PathBuf;

use tailgate_runtime::{RedisConfig, StateLimits};

/// The state directory when none is configured, taken from the config
/// file's folder (beside the plugin cache's `.tailgate/cache`).
pub const DEFAULT_STATE_DIR: &str = ".tailgate/state";

/// The validated `[state]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    /// Where `bans.json` is kept (created at start).
    pub dir: PathBuf,
    /// Caps on counters, kv, windows, rate-limit keys and bans.
    pub limits: StateLimits,
    /// `backend = "redis"`: the shared backend; `None` = `"local"`.
    pub redis: Option<RedisConfig>,
}

/// `key_prefix` when none is configured.
pub const DEFAULT_KEY_PREFIX: &str = "tailgate:";
/// `timeout` when none is configured.
pub const DEFAULT_BACKEND_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(50);
/// `sync_interval` when none is configured.
pub const DEFAULT_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// `pool_size` when none is configured.
pub const DEFAULT_POOL_SIZE: usize = 2;
