//! The validated `[state]` section: where the plugin runtime keeps state
//! that outlives the process (the ban list's `bans.json`) and the caps on
//! plugin host state. Built by `config::state` at load; applied when the
//! plugin runtime starts (`crate::cli`): a reload that changes it warns that
//! a restart is needed.

use std::path::PathBuf;

use tailgate_runtime::StateLimits;

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
}
