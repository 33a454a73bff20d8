//! The config file as written: serde structs mirroring `config.toml` key for
//! key, each value with its byte span. First step of config loading; the
//! other `config` modules turn these into the validated `model` types.
//! Unknown keys are rejected (`deny_unknown_fields`) with their line and column.
//!
//! Tables are never wrapped in `Spanned`: toml 0.8 has no span for a table
//! made implicitly by a dotted key (`config.x = 1`, `[a.b.c]`), and a
//! `Spanned` table would then fail to deserialize. Errors about a table are
//! placed at its name (or its first key) instead.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::error::ConfigErrorKind;
use super::values::parse_size;

/// A string key with its span (table keys: plugin, upstream and status names).
pub type SpannedKey = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub plugin_runtime: RawPluginRuntime,
    /// Plugin name -> wasm file.
    #[serde(default)]
    pub plugins: BTreeMap<SpannedKey, Spanned<String>>,
    #[serde(default)]
    pub upstreams: BTreeMap<SpannedKey, RawUpstream>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub cache: super::cache::RawCache,
    #[serde(default)]
    pub telemetry: super::telemetry::RawTelemetry,
    pub tailnet: Option<super::tailnet::RawTailnet>,
    pub tls: Option<super::tls::RawTls>,
    #[serde(default)]
    pub admin: super::admin::RawAdmin,
    #[serde(default)]
    pub access_log: super::access_log::RawAccessLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Spanned<Vec<Spanned<String>>>>,
    pub workers: Option<Spanned<usize>>,
    pub client_ip_header: Option<Spanned<String>>,
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    pub unknown_host: Option<RawUnknownHost>,
    pub drain_timeout: Option<Spanned<String>>,
    pub proxy_protocol: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnknownHost {
    pub action: Spanned<RawUnknownHostAction>,
    pub status: Option<Spanned<u16>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawUnknownHostAction {
    Status,
    Close,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPluginRuntime {
    pub cache_dir: Option<Spanned<String>>,
    pub hook_timeout: Option<Spanned<String>>,
    pub memory_limit: Option<Spanned<RawSize>>,
    pub max_instances: Option<Spanned<u32>>,
    pub max_calls_per_instance: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: Option<Spanned<String>>,
    #[serde(rename = "static")]
    pub static_root: Option<Spanned<String>>,
    pub host_header: Option<Spanned<RawHostHeader>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub response_timeout: Option<Spanned<String>>,
    pub tls_verify: Option<Spanned<bool>>,
    /// Several addresses of one upstream, in failover order (instead of `url`).
    pub urls: Option<Spanned<Vec<Spanned<String>>>>,
    pub ca_file: Option<Spanned<String>>,
    pub tls_handshake_timeout: Option<Spanned<String>>,
    pub max_fails: Option<Spanned<u32>>,
    pub fail_timeout: Option<Spanned<String>>,
    pub health_check: Option<RawHealthCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub path: Spanned<String>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
}

/// `host_header`: `"client"`, `"upstream"` or `{ set = "name" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawHostHeader {
    Client,
    Upstream,
    Set(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Spanned<String>,
    pub hosts: Spanned<Vec<Spanned<String>>>,
    pub path: Option<Spanned<String>>,
    pub path_exact: Option<Spanned<String>>,
    pub path_regex: Option<Spanned<String>>,
    pub upstream: Spanned<String>,
    pub max_body_size: Option<Spanned<RawSize>>,
    pub plugin_failure: Option<Spanned<RawFailurePolicy>>,
    #[serde(default)]
    pub error_pages: BTreeMap<SpannedKey, Spanned<String>>,
    pub error_pages_for: Option<Spanned<RawErrorPagesFor>>,
    pub internal: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub plugins: Vec<RawRoutePlugin>,
    pub hook_timeout: Option<Spanned<String>>,
    pub memory_limit: Option<Spanned<RawSize>>,
    pub cache: Option<super::cache::RawRouteCache>,
    pub https_redirect: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoutePlugin {
    pub plugin: Spanned<String>,
    pub config: Option<toml::Table>,
    pub on_failure: Option<Spanned<RawFailurePolicy>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawErrorPagesFor {
    Upstream,
    Bodiless,
    All,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawFailurePolicy {
    Open,
    Closed,
}

/// A size as written: a TOML integer (bytes) or a string such as `"16MiB"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawSize {
    Bytes(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl Visitor<'_> for SizeVisitor {
            type Value = RawSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"16MiB\" or a number of bytes")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSize, E> {
                u64::try_from(v)
                    .map(RawSize::Bytes)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.to_owned()))
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

impl RawSize {
    /// The size in bytes.
    pub fn bytes(&self) -> Result<u64, ConfigErrorKind> {
        match self {
            RawSize::Bytes(n) => Ok(*n),
            RawSize::Text(text) => parse_size(text),
        }
    }
}

impl fmt::Display for RawSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawSize::Bytes(n) => write!(f, "{n}"),
            RawSize::Text(s) => write!(f, "\"{s}\""),
        }
    }
}
