//! The plugin's config as the operator writes it under
//! `[routes.plugins.config]` (laid over `[plugins.ban] config`, where
//! `shared_jails` and `defaults` usually are): the raw serde shape, with
//! unknown keys rejected. [`crate::jail::Jail::build`] merges and validates
//! it into the form the hooks use.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// This route's jails (fail2ban `[name]` sections of jail.d).
    #[serde(default)]
    pub jails: Vec<RawJail>,
    /// Jails defined once by name (usually at the plugin level); a route's
    /// `jails` entry with that name takes these settings and may override
    /// any of them.
    #[serde(default)]
    pub shared_jails: BTreeMap<String, RawJail>,
    /// Settings of every jail that gives none (fail2ban `[DEFAULT]`).
    #[serde(default)]
    pub defaults: RawJail,
}

/// One jail, every setting optional: a `jails` entry, a `shared_jails`
/// definition or `defaults`. Precedence: the entry, then its shared
/// definition, then `defaults`, then the built-in default.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJail {
    /// Only in `jails` entries: the ban-list jail, shared by every route
    /// naming it.
    pub name: Option<String>,
    /// Response statuses that count as a failure (default [401, 403]).
    pub statuses: Option<Vec<u16>>,
    /// Regex searched in the normalised path: only there do failures count.
    pub path: Option<String>,
    /// Methods whose failures count (default: all).
    pub methods: Option<Vec<String>>,
    /// Failures within `find_time` that ban (default 5).
    pub max_retry: Option<u32>,
    /// The sliding window failures are counted in (default "10m").
    pub find_time: Option<String>,
    /// How long a first ban lasts (default "1h").
    pub ban_time: Option<String>,
    /// Longer bans for repeat offenders (fail2ban bantime.increment).
    pub ban_time_increment: Option<RawIncrement>,
    /// What failures are counted and bans kept by (default "client_ip").
    pub key: Option<String>,
    /// Client networks never counted, banned or blocked.
    pub ignore: Option<Vec<String>>,
    /// Count and log "would ban", never ban or block.
    pub dry_run: Option<bool>,
    /// `"status"` (answer `status` + `body`) or `"close"` (444).
    pub action: Option<RawAction>,
    /// Status of the answer to a banned client (default 403).
    pub status: Option<u16>,
    /// Body of that answer.
    pub body: Option<String>,
}

/// `ban_time_increment = { factor = 2.0, max = "1w" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIncrement {
    /// Each earlier ban multiplies the length by this (default 2.0).
    pub factor: Option<f64>,
    /// The longest a grown ban lasts (default: no cap).
    pub max: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawAction {
    Status,
    Close,
}

/// The default answer's body (the stack's nginx text).
pub const DEFAULT_BODY: &str = "Temporarily blocked. Try again later.\n";
