//! The cases file (`CASES.toml`) as written: top-level settings and the
//! default config, then `[[case]]`s, each a list of `[[case.step]]`s with
//! inputs and expectations. `deny_unknown_fields` throughout, so a typo in
//! an expectation is an error, not a check silently skipped.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A whole cases file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasesFile {
    /// The plugin's name (state namespace, `plugin` metric label); default:
    /// the wasm file's stem, `_` as `-`.
    pub plugin: Option<String>,
    /// The route plugins are configured for; default `test`.
    pub route: Option<String>,
    /// Hook time budget, e.g. `"50ms"` (the proxy's default).
    pub hook_timeout: Option<String>,
    /// Instance memory cap, e.g. `"16MiB"`, or bytes.
    pub memory_limit: Option<MemorySize>,
    /// Where the fake clock starts, Unix epoch ms.
    pub clock_start_ms: Option<u64>,
    /// Caps on plugin state (to test eviction at a small cap).
    pub state_limits: Option<StateLimitsInput>,
    /// The config of every case that gives none.
    pub config: Option<toml::Table>,
    #[serde(default, rename = "case")]
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MemorySize {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateLimitsInput {
    pub max_key_bytes: Option<usize>,
    pub max_counters: Option<usize>,
    pub max_kv_entries: Option<usize>,
    pub max_kv_value_bytes: Option<usize>,
    pub max_zones: Option<usize>,
    pub max_keys_per_zone: Option<usize>,
}

/// One case: a fresh runtime (fresh state, clock at the start), the plugin
/// configured, then the steps in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// Replaces the file's `config` for this case.
    pub config: Option<toml::Table>,
    /// The case passes when `configure` rejects the config with a message
    /// containing this text.
    pub expect_config_error: Option<String>,
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
}

/// One step: seed state, move the clock, call one hook, check. Each part is
/// optional; they happen in that order. The hook is `on-log` when `log` is
/// given, `on-response` when `response` is, else `on-request` when
/// `request` is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub seed: Option<Seed>,
    /// How far to move the clock first, e.g. `"1s"`, `"250ms"`.
    pub advance: Option<String>,
    pub request: Option<RequestInput>,
    pub response: Option<ResponseInput>,
    pub log: Option<LogInput>,
    /// Call the hook this many times, checking `expect` each time.
    pub repeat: Option<u32>,
    pub expect: Option<Expect>,
}

/// Header values: one, or several fields of the same name.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum HeaderValues {
    One(String),
    Many(Vec<String>),
}

impl HeaderValues {
    pub fn values(&self) -> Vec<&str> {
        match self {
            HeaderValues::One(v) => vec![v.as_str()],
            HeaderValues::Many(vs) => vs.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestInput {
    pub method: Option<String>,
    /// Path and optional `?query`; default `/`.
    pub uri: Option<String>,
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub client_ip: Option<String>,
    pub route: Option<String>,
    pub request_id: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValues>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseInput {
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValues>,
    #[serde(default)]
    pub host_generated: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogInput {
    pub method: Option<String>,
    pub uri: Option<String>,
    pub status: Option<u16>,
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub client_ip: Option<String>,
    pub route: Option<String>,
    pub request_id: Option<String>,
    pub protocol: Option<String>,
    pub bytes_sent: Option<u64>,
    pub bytes_received: Option<u64>,
    pub request_time: Option<f64>,
    pub upstream_addr: Option<String>,
    pub upstream_response_time: Option<f64>,
    pub cache_status: Option<String>,
    pub time_unix_ms: Option<u64>,
    #[serde(default)]
    pub request_headers: BTreeMap<String, HeaderValues>,
    #[serde(default)]
    pub response_headers: BTreeMap<String, HeaderValues>,
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}

/// State to put in place before the hook runs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub counters: BTreeMap<String, i64>,
    #[serde(default)]
    pub kv: BTreeMap<String, String>,
    /// TTL of the seeded counters and kv entries, ms (0 = none).
    #[serde(default)]
    pub ttl_ms: u64,
}

/// What the step must produce. Only what is given is checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// on-request: the request goes on (with these edits, if given).
    #[serde(rename = "continue")]
    pub proceed: Option<ContinueExpect>,
    /// on-request: the plugin answers.
    pub respond: Option<RespondExpect>,
    /// on-response: the header edits.
    pub edits: Option<EditsExpect>,
    /// on-log: the exact line.
    pub line: Option<String>,
    /// on-log: text the line must contain.
    pub line_contains: Option<Vec<String>>,
    /// on-log: the exact label set.
    pub labels: Option<BTreeMap<String, String>>,
    /// on-log: the line was dropped (`true`) or kept (`false`).
    pub dropped: Option<bool>,
    /// Any hook: it faulted with this kind (`trap`, `timeout`, `memory`).
    pub fault: Option<String>,
    /// Any hook: the plugin's own log lines of the call contain these texts.
    pub logs_contain: Option<Vec<String>>,
    /// Metrics recorded so far in the case.
    pub metrics: Option<Vec<MetricExpect>>,
    /// The plugin's shared state after the step.
    pub state: Option<StateExpect>,
}

/// Header edits: when any of `set`, `append`, `remove` is given (even
/// empty), the plugin's edits must be exactly these, in any order.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditsExpect {
    pub set: Option<BTreeMap<String, String>>,
    pub append: Option<BTreeMap<String, HeaderValues>>,
    pub remove: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContinueExpect {
    pub set: Option<BTreeMap<String, String>>,
    pub append: Option<BTreeMap<String, HeaderValues>>,
    pub remove: Option<Vec<String>>,
    /// The new path (`""` = no rewrite).
    pub path: Option<String>,
    pub delay_ms: Option<u32>,
    /// Vars that must be set (others may be too).
    pub vars: Option<BTreeMap<String, String>>,
}

impl ContinueExpect {
    pub fn edits(&self) -> EditsExpect {
        EditsExpect {
            set: self.set.clone(),
            append: self.append.clone(),
            remove: self.remove.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespondExpect {
    pub status: Option<u16>,
    /// Headers the answer must have (others may be there too).
    pub headers: Option<BTreeMap<String, String>>,
    pub body: Option<String>,
    pub body_contains: Option<String>,
    /// Vars that must be set.
    pub vars: Option<BTreeMap<String, String>>,
}

/// A metric as the proxy would export it: `tailgate_plugin_<name>` for a
/// plugin's own metrics. Give one of `counter`, `gauge`, `histogram_count`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricExpect {
    pub name: String,
    /// Labels the series must have (at least).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Sum of the matching counters.
    pub counter: Option<u64>,
    pub gauge: Option<f64>,
    /// Values recorded into the matching histograms.
    pub histogram_count: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateExpect {
    /// Counter values (0 = absent or expired).
    pub counters: Option<BTreeMap<String, i64>>,
    /// kv values, as text.
    pub kv: Option<BTreeMap<String, String>>,
    /// kv keys that must be absent.
    pub kv_absent: Option<Vec<String>>,
    /// Rate-limit zone name -> buckets held.
    pub rate_limit_keys: Option<BTreeMap<String, usize>>,
}
