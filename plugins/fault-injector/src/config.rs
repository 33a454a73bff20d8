//! The fault-injector's config: the JSON object the host hands to `configure`,
//! parsed once per instance and kept for the hooks that follow.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::tailgate::plugin::types::{
    FixedEdit, FixedEdits, HeaderFilter, HeaderOp, HookGate, HookSet, LogFieldSet, LogGate, Method,
    PluginInfo, RequestChecks, RequestFieldSet, StateScope, ValuePart,
};

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

/// A hook gate as given: method names (`OPTIONS`) and request header
/// field names, sent as they are (the host checks the names).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub with_headers: Vec<String>,
}

impl GateConfig {
    fn gate(&self) -> HookGate {
        let method = |name: &String| match name.as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "CONNECT" => Method::Connect,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            "PATCH" => Method::Patch,
            _ => Method::Other(name.clone()),
        };
        HookGate {
            methods: self.methods.iter().map(method).collect(),
            with_headers: self.with_headers.clone(),
        }
    }
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
    /// Fault only on requests with this path (a log record's `uri`):
    /// deterministic whichever calls or batches the records come in.
    #[serde(default)]
    pub only_path: Option<String>,
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
    /// `plugin-info.request-checks.client-bans`: jails the host looks the
    /// client up in before the request hook.
    #[serde(default)]
    pub client_bans: Vec<String>,
    /// `plugin-info.request-gate` (absent: every request).
    #[serde(default)]
    pub request_gate: GateConfig,
    /// `plugin-info.response-gate` (absent: every request).
    #[serde(default)]
    pub response_gate: GateConfig,
    /// `plugin-info.log-gate.statuses` (absent: every record). Not
    /// checked here: the host refuses a status outside 100-599.
    #[serde(default)]
    pub log_gate: Vec<u16>,
    /// The response header fields to ask the host for (absent = all).
    #[serde(default)]
    pub response_headers: Option<Vec<String>>,
    /// The request-head fields to ask for, by their WIT names with `_`
    /// (`client_ip`; absent = all); an unknown name is refused.
    #[serde(default)]
    pub request_fields: Option<Vec<String>>,
    /// The optional log-record fields to ask for, likewise.
    #[serde(default)]
    pub log_fields: Option<Vec<String>>,
    /// Fixed request edits to declare, name -> value, each a `set`. Not
    /// checked here: what the host does with bad ones is what tests look at.
    #[serde(default)]
    pub fixed_request: BTreeMap<String, String>,
    /// Fixed response edits to declare, likewise.
    #[serde(default)]
    pub fixed_response: BTreeMap<String, String>,
    /// The fixed response edits' `response-always`.
    #[serde(default)]
    pub fixed_response_always: bool,
    /// The host-state scope to declare: absent = the plugin's, "route" =
    /// the route's, any other name = that named scope.
    #[serde(default)]
    pub state_scope: Option<String>,
    /// Milliseconds `configure` keeps its CPU busy before it returns, as a
    /// plugin compiling a large config does (spanning epoch ticks).
    #[serde(default)]
    pub configure_ms: u64,
}

/// The request-head fields by name.
pub const REQUEST_FIELDS: &[(&str, RequestFieldSet)] = &[
    ("host", RequestFieldSet::HOST),
    ("path", RequestFieldSet::PATH),
    ("query", RequestFieldSet::QUERY),
    ("route", RequestFieldSet::ROUTE),
    ("request_id", RequestFieldSet::REQUEST_ID),
];

/// The optional log-record fields by name.
pub const LOG_FIELDS: &[(&str, LogFieldSet)] = &[
    ("host", LogFieldSet::HOST),
    ("uri", LogFieldSet::URI),
    ("upstream_addr", LogFieldSet::UPSTREAM_ADDR),
    ("route", LogFieldSet::ROUTE),
    ("request_id", LogFieldSet::REQUEST_ID),
    ("user_agent", LogFieldSet::USER_AGENT),
    ("referer", LogFieldSet::REFERER),
    ("vars", LogFieldSet::VARS),
];

/// The flags named in `names`, from `none` (absent: `all`); names were
/// checked by [`Config::parse`].
fn flag_set<F: Copy + std::ops::BitOr<Output = F>>(
    names: &Option<Vec<String>>,
    known: &[(&str, F)],
    none: F,
    all: F,
) -> F {
    let Some(names) = names else { return all };
    names
        .iter()
        .filter_map(|name| known.iter().find(|(n, _)| n == name).map(|(_, f)| *f))
        .fold(none, |acc, f| acc | f)
}

/// A `set` edit per entry.
fn sets(fields: &BTreeMap<String, String>) -> Vec<FixedEdit> {
    fields
        .iter()
        .map(|(name, value)| FixedEdit {
            op: HeaderOp::Set,
            name: name.clone(),
            value: vec![ValuePart::Text(value.as_bytes().to_vec())],
        })
        .collect()
}

/// Every name in `names` is one of `known`.
fn check_names<F>(
    key: &str,
    names: &Option<Vec<String>>,
    known: &[(&str, F)],
) -> Result<(), String> {
    for name in names.iter().flatten() {
        if !known.iter().any(|(n, _)| n == name) {
            return Err(format!("`{key}`: unknown field `{name}`"));
        }
    }
    Ok(())
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
        check_names("request_fields", &config.request_fields, REQUEST_FIELDS)?;
        check_names("log_fields", &config.log_fields, LOG_FIELDS)?;
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
            request_fields: flag_set(
                &self.request_fields,
                REQUEST_FIELDS,
                RequestFieldSet::empty(),
                RequestFieldSet::all(),
            ),
            log_fields: flag_set(
                &self.log_fields,
                LOG_FIELDS,
                LogFieldSet::empty(),
                LogFieldSet::all(),
            ),
            fixed_edits: FixedEdits {
                request: sets(&self.fixed_request),
                response: sets(&self.fixed_response),
                response_always: self.fixed_response_always,
            },
            state_scope: match &self.state_scope {
                None => StateScope::Plugin,
                Some(name) if name == "route" => StateScope::Route,
                Some(name) => StateScope::Named(name.clone()),
            },
            request_checks: RequestChecks {
                checks: Vec::new(),
                passed: Vec::new(),
                client_bans: self.client_bans.clone(),
            },
            request_gate: self.request_gate.gate(),
            response_gate: self.response_gate.gate(),
            log_gate: LogGate {
                statuses: self.log_gate.clone(),
            },
        }
    }

    pub fn counter_key(&self) -> String {
        self.counter
            .clone()
            .unwrap_or_else(|| format!("calls-{}", self.hook.name()))
    }
}
