//! The plugin's config as the operator writes it under
//! `[routes.plugins.config]`: the raw serde shape, with unknown keys
//! rejected. [`crate::shaper::LogShaper::build`] validates it into the form
//! `on-log` uses.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub format: RawFormat,
    /// The line, with `{field}` placeholders (`format = "template"` only).
    pub template: Option<String>,
    /// A ready field list; the default when `fields` is absent.
    pub preset: Option<RawPreset>,
    /// Fields in line order: names from the catalog, or `{ name, from }`.
    /// Added after the preset's when a preset is given.
    pub fields: Option<Vec<RawField>>,
    /// Output name -> new output name.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Output names to leave out (of a preset, typically).
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub redact: RawRedact,
    /// Lines matching any rule are dropped.
    #[serde(default)]
    pub drop: Vec<RawMatch>,
    pub sample: Option<RawSample>,
    /// Loki label name -> value template.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Let labels use unbounded fields (client IP, URI, ...).
    #[serde(default)]
    pub allow_high_cardinality: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawFormat {
    #[default]
    Json,
    Logfmt,
    Template,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawPreset {
    Nginx,
}

/// One entry of `fields`: `"request_id"`, or `{ name = "ua", from =
/// "http_user_agent" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawField {
    pub name: String,
    pub from: String,
}

impl<'de> Deserialize<'de> for RawField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawFieldVisitor)
    }
}

struct RawFieldVisitor;

impl<'de> Visitor<'de> for RawFieldVisitor {
    type Value = RawField;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name or a table { name = \"...\", from = \"...\" }")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<RawField, E> {
        Ok(RawField {
            name: name.to_owned(),
            from: name.to_owned(),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawField, A::Error> {
        let mut name: Option<String> = None;
        let mut from: Option<String> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "name" if name.is_none() => name = Some(map.next_value()?),
                "from" if from.is_none() => from = Some(map.next_value()?),
                "name" | "from" => return Err(de::Error::duplicate_field("name or from")),
                other => return Err(de::Error::unknown_field(other, &["name", "from"])),
            }
        }
        let name = name.ok_or_else(|| de::Error::missing_field("name"))?;
        let from = from.ok_or_else(|| de::Error::missing_field("from"))?;
        Ok(RawField { name, from })
    }
}

/// `redact.*`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedact {
    /// Query parameter names whose values become `REDACTED`.
    #[serde(default)]
    pub query_params: Vec<String>,
    /// Header names whose values become `REDACTED`.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Cut client addresses to their network.
    #[serde(default)]
    pub ip_truncate: bool,
    pub ipv4_prefix: Option<u8>,
    pub ipv6_prefix: Option<u8>,
}

/// A class of requests: every condition given must hold.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    /// Regex searched in the path (without the query).
    pub path: Option<String>,
    /// `"200-399"`, `"404"`, `"5xx"`, or a comma list.
    pub status: Option<String>,
    pub methods: Option<Vec<String>>,
}

/// `sample`: keep 1 in `rate` lines of the `when` class.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSample {
    pub rate: u32,
    /// Which lines are sampled (default: all).
    #[serde(default)]
    pub when: RawMatch,
    /// Statuses always kept (default: `"400-599"`).
    pub always_keep: Option<String>,
}
