//! The config file as written: [`RawFile`], one field per section, each
//! section's raw table defined beside its build step (`config/<section>.rs`),
//! and the raw value types the sections share ([`RawSize`], [`SpannedKey`]).
//! First step of config loading. Unknown keys are rejected
//! (`deny_unknown_fields`) with their line and column.
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
    pub server: super::server::RawServer,
    #[serde(default)]
    pub plugin_runtime: super::server::RawPluginRuntime,
    /// Plugin name -> wasm file, or a table with the file and the config
    /// every route's config for the plugin is laid over.
    #[serde(default)]
    pub plugins: BTreeMap<SpannedKey, super::server::RawPlugin>,
    #[serde(default)]
    pub upstreams: BTreeMap<SpannedKey, super::upstream::RawUpstream>,
    #[serde(default)]
    pub routes: Vec<super::route::RawRoute>,
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
    #[serde(default)]
    pub state: super::state::RawState,
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
