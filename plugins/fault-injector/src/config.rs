//! The fault-injector's config: the JSON object the host hands to `configure`,
//! parsed once per instance and kept for the hooks that follow.

use serde::Deserialize;

use crate::tailgate::plugin::types::{HeaderFilter, HookSet, PluginInfo};

/// What the plugin does when its chosen hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Behave: small, realistic edits on every hook (the benchmark's mode).
    Ok,
    /// Panic (`unreachable` trap) in the chosen hook.
    Trap,
    /// Spin forever in the chosen hook (stopped by the host's time budget).
    Loop,
    /// Allocate without bound in the chosen hook (stopped by the memory cap).
    Alloc,
    /// `configure` returns an error with `message`.
    Reject,
    /// Call every host import and echo the results as headers and vars.
    State,
}

/// The hook a fault fires in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    Configure,
    Request,
    Response,
    Log,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::Configure => "configure",
            Hook::Request => "request",
            Hook::Response => "response",
            Hook::Log => "log",
        }
    }
}

/// A rate-limit zone for `state` mode, nginx `limit_req` style.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub zone: String,
    pub rate_milli: u64,
    pub burst: u32,
    #[serde(default)]
    pub delay: u32,
    #[serde(default)]
    pub dry_run: bool,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            zone: "state".to_string(),
            rate_milli: 1_000_000,
            burst: 1000,
            delay: 1000,
            dry_run: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// Where a trap/loop/alloc fault fires.
    #[serde(default = "default_hook")]
    pub hook: Hook,
    /// Fault from the Nth call of `hook` on (counted with the host's shared
    /// `counter-incr`, so across instances and threads); absent = every call.
    #[serde(default)]
    pub after: Option<u64>,
    /// With `after`: how many calls fault (from the `after`th on); absent =
    /// all later calls. `"after": 2, "times": 1` faults the 2nd call only.
    #[serde(default)]
    pub times: Option<u64>,
    /// Name of the shared call counter `after` uses (default
    /// `calls-<hook>`); give routes sharing the plugin different names.
    #[serde(default)]
    pub counter: Option<String>,
    /// Hooks to declare in the hook-set (default: all three).
    #[serde(default = "default_hooks")]
    pub hooks: Vec<Hook>,
    /// The rejection message of `reject` mode.
    #[serde(default)]
    pub message: Option<String>,
    /// TTL of the `hits` counter and the kv entries in `state` mode.
    #[serde(default)]
    pub ttl_ms: u64,
    /// Rate-limit zone of `state` mode.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// The request header fields to ask the host for (absent = all).
    #[serde(default)]
    pub request_headers: Option<Vec<String>>,
    /// The response header fields to ask the host for (absent = all).
    #[serde(default)]
    pub response_headers: Option<Vec<String>>,
}

fn default_mode() -> Mode {
    Mode::Ok
}

fn default_hook() -> Hook {
    Hook::Request
}

fn default_hooks() -> Vec<Hook> {
    vec![Hook::Request, Hook::Response, Hook::Log]
}

impl Config {
    pub fn parse(json: &str) -> Result<Config, String> {
        let config: Config = serde_json::from_str(json)
            .map_err(|e| format!("invalid fault-injector config: {e}"))?;
        if config.hooks.contains(&Hook::Configure) {
            return Err(
                "`hooks` lists hooks the host calls per request: request, response, log".into(),
            );
        }
        if config.after == Some(0) {
            return Err("`after` counts calls from 1".into());
        }
        if config.times.is_some() && config.after.is_none() {
            return Err("`times` needs `after`".into());
        }
        if config.rate_limit.rate_milli == 0 {
            return Err("`rate_limit.rate_milli` must be above 0".into());
        }
        Ok(config)
    }

    pub fn hook_set(&self) -> HookSet {
        let mut set = HookSet::empty();
        for hook in &self.hooks {
            set |= match hook {
                Hook::Request => HookSet::REQUEST,
                Hook::Response => HookSet::RESPONSE,
                Hook::Log => HookSet::LOG,
                Hook::Configure => HookSet::empty(),
            };
        }
        set
    }

    /// What `configure` reports: the hooks, and the header fields asked for.
    pub fn plugin_info(&self) -> PluginInfo {
        let filter = |names: &Option<Vec<String>>| match names {
            None => HeaderFilter::All,
            Some(names) => HeaderFilter::Only(names.clone()),
        };
        PluginInfo {
            hooks: self.hook_set(),
            request_headers: filter(&self.request_headers),
            response_headers: filter(&self.response_headers),
        }
    }

    pub fn counter_key(&self) -> String {
        self.counter
            .clone()
            .unwrap_or_else(|| format!("calls-{}", self.hook.name()))
    }
}
