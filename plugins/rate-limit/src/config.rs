//! The plugin's config as the operator writes it under
//! `[routes.plugins.config]` (laid over `[plugins.rate-limit] config`, where
//! the shared `zones` usually are): the raw serde shape, with unknown keys
//! rejected. [`crate::policy::RateLimitPolicy::build`] validates it into the
//! form `on-request` uses.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Zones defined once and used by name from `limits`, each with its own
    /// burst (nginx `limit_req_zone`, then `limit_req zone=<name>`).
    #[serde(default)]
    pub zones: BTreeMap<String, RawZone>,
    /// The limits, checked in order (nginx: several `limit_req` lines).
    pub limits: Vec<RawLimit>,
    /// Status of a rejection (nginx `limit_req_status`); a limit may
    /// override it.
    #[serde(default = "default_status")]
    pub status: u16,
    /// Report, never enforce (nginx `limit_req_dry_run`); a limit may
    /// override it.
    #[serde(default)]
    pub dry_run: bool,
    /// Body of a rejection; default: the status's reason phrase.
    pub body: Option<String>,
    /// Level of the rejection log line; delays log one level lower (nginx
    /// `limit_req_log_level`).
    #[serde(default)]
    pub log_level: RawLogLevel,
}

/// `zones.<name>`: nginx `limit_req_zone <key> zone=<name> rate=<rate>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZone {
    /// `"10r/s"`, `"30r/m"`.
    pub rate: String,
    /// `"client_ip"` (default), `"global"`, `"header:<name>"` or a template.
    pub key: Option<String>,
}

/// `limits[i]`: nginx `limit_req` (a zone of `zones` by name, with a burst)
/// or `limit_req_zone` + `limit_req` in one table (a `rate` of its own).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimit {
    /// The zone's name: its buckets are shared by every limit, of any
    /// route, that uses the zone with the same rate, each with its own
    /// burst.
    pub zone: String,
    /// `"10r/s"`, `"30r/m"`; given by `zones.<zone>` when the zone is there.
    pub rate: Option<String>,
    #[serde(default)]
    pub burst: u32,
    /// Serve the whole burst without delay.
    #[serde(default)]
    pub nodelay: bool,
    /// Serve the first `delay` requests of the burst without delay.
    pub delay: Option<u32>,
    /// `"client_ip"` (default), `"global"`, `"header:<name>"` or a template;
    /// given by `zones.<zone>` when the zone is there.
    pub key: Option<String>,
    /// Regex searched in the path: the limit applies only where it matches.
    pub path: Option<String>,
    /// Methods the limit applies to (default: all).
    pub methods: Option<Vec<String>>,
    pub status: Option<u16>,
    pub dry_run: Option<bool>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawLogLevel {
    Info,
    #[default]
    Warn,
    Error,
}

fn default_status() -> u16 {
    429
}
