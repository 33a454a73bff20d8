//! The whole validated config of one (plugin, route) and what `on-log` does
//! with each finished exchange: drop rules first, then sampling, then the
//! line (JSON, logfmt or template, redaction applied) and its Loki labels.
//! Discarded lines are counted in `log_lines_discarded{reason}`.

use std::cell::Cell;

use tailgate_plugin_sdk::{Config, ConfigError, HeaderFilter, LogFieldSet, LogLine, LogRecord};

use crate::config::{RawConfig, RawField, RawFormat, RawPreset};
use crate::fields::Field;
use crate::labels::Labels;
use crate::line_filter::{RequestClass, SampleCounter, Sampling};
use crate::line_format::{LineFormat, OutputField, Plan};
use crate::redact::Redaction;
use crate::render::{Ctx, Memo};
use crate::template::Template;

/// nginx `log_format escape=json` with the variables people log, under
/// nginx's names, in this order.
pub const NGINX_PRESET: [&str; 12] = [
    "time",
    "remote_addr",
    "client_ip",
    "request_method",
    "request_uri",
    "status",
    "body_bytes_sent",
    "request_time",
    "upstream_response_time",
    "upstream_cache_status",
    "http_host",
    "http_user_agent",
];

/// Most fields in one line.
const MAX_FIELDS: usize = 64;
/// The counter metric of discarded lines (`tailgate_plugin_` + this).
pub const DISCARDED_METRIC: &str = "log_lines_discarded";

/// The host imports `on-log` uses, so the logic is tested natively.
pub trait LogShapeHost: SampleCounter {
    fn counter_add(&self, name: &str, labels: &[(&str, &str)], value: u64);
}

#[derive(Debug, Clone)]
pub struct LogShaper {
    format: LineFormat,
    /// `format`, ready to render.
    plan: Plan,
    /// The last line's timestamp (reused within its second) and addresses.
    memo: Memo,
    /// The last line's length: the next line's buffer is made that big
    /// (and a bit) at once instead of growing.
    last_len: Cell<usize>,
    redaction: Redaction,
    drop: Vec<RequestClass>,
    sample: Option<Sampling>,
    labels: Labels,
}

impl LogShaper {
    pub fn from_config(config: &Config) -> Result<LogShaper, ConfigError> {
        let raw: RawConfig = config.parse()?;
        LogShaper::build(&raw)
    }

    pub fn build(raw: &RawConfig) -> Result<LogShaper, ConfigError> {
        let format = line_format(raw)?;
        let redaction = Redaction::build(&raw.redact)?;
        let drop = raw
            .drop
            .iter()
            .enumerate()
            .map(|(i, rule)| RequestClass::build(&format!("drop[{i}]"), rule, false))
            .collect::<Result<_, _>>()?;
        let sample = raw.sample.as_ref().map(Sampling::build).transpose()?;
        let labels = Labels::build(&raw.labels, raw.allow_high_cardinality)?;
        Ok(LogShaper {
            plan: Plan::new(&format),
            format,
            memo: Memo::default(),
            last_len: Cell::new(0),
            redaction,
            drop,
            sample,
            labels,
        })
    }

    /// The request headers the line and labels read (`http_<name>`,
    /// `http_host`); the host copies only those into the record.
    pub fn request_headers(&self) -> HeaderFilter {
        HeaderFilter::only(self.fields().filter_map(Field::request_header))
    }

    /// The response headers the line and labels read (`sent_http_<name>`).
    pub fn response_headers(&self) -> HeaderFilter {
        HeaderFilter::only(self.fields().filter_map(Field::response_header))
    }

    /// The record fields `on-log` reads: the line's and labels' fields'
    /// (`request` reads method, URI and protocol; `time` none), those the
    /// drop rules and sampling match on, and the route when sampling
    /// counts; the host sends the others empty.
    pub fn log_fields(&self) -> LogFieldSet {
        let fields = self
            .fields()
            .fold(LogFieldSet::empty(), |set, field| set | field.log_fields());
        let fields = self
            .drop
            .iter()
            .fold(fields, |set, rule| set | rule.log_fields());
        match &self.sample {
            Some(sample) => fields | sample.log_fields(),
            None => fields,
        }
    }

    fn fields(&self) -> impl Iterator<Item = &Field> {
        self.format.fields().chain(self.labels.fields())
    }

    pub fn on_log(&self, rec: &LogRecord, host: &impl LogShapeHost) -> Option<LogLine> {
        if self.drop.iter().any(|rule| rule.matches(rec)) {
            host.counter_add(DISCARDED_METRIC, &[("reason", "drop")], 1);
            return None;
        }
        if let Some(sample) = &self.sample {
            if !sample.keeps(rec, host) {
                host.counter_add(DISCARDED_METRIC, &[("reason", "sample")], 1);
                return None;
            }
        }
        let ctx = Ctx {
            rec,
            redaction: &self.redaction,
            memo: &self.memo,
        };
        let line = self.plan.render(&ctx, self.last_len.get() + 64);
        self.last_len.set(line.len());
        Some(LogLine {
            line,
            labels: self.labels.render(rec, &self.redaction),
        })
    }
}

/// The line's format and fields from `format`, `template`, `preset`,
/// `fields`, `rename` and `exclude`.
fn line_format(raw: &RawConfig) -> Result<LineFormat, ConfigError> {
    if raw.format == RawFormat::Template {
        let Some(source) = &raw.template else {
            return Err(ConfigError::new(
                "template",
                "format = \"template\" needs a `template`, e.g. \"{remote_addr} {request} {status}\"",
            ));
        };
        for (key, given) in [
            ("preset", raw.preset.is_some()),
            ("fields", raw.fields.is_some()),
            ("rename", !raw.rename.is_empty()),
            ("exclude", !raw.exclude.is_empty()),
        ] {
            if given {
                return Err(ConfigError::new(
                    key,
                    "not used with format = \"template\": the template names its fields",
                ));
            }
        }
        let template = Template::parse(source).map_err(|err| ConfigError::new("template", err))?;
        return Ok(LineFormat::Template(template));
    }
    if raw.template.is_some() {
        return Err(ConfigError::new(
            "template",
            "only used with format = \"template\"",
        ));
    }
    let fields = output_fields(raw)?;
    Ok(match raw.format {
        RawFormat::Logfmt => LineFormat::Logfmt(fields),
        RawFormat::Json | RawFormat::Template => LineFormat::Json(fields),
    })
}

fn output_fields(raw: &RawConfig) -> Result<Vec<OutputField>, ConfigError> {
    let mut fields: Vec<OutputField> = Vec::new();
    // The nginx preset is the default when no fields are chosen.
    let preset = match (raw.preset, &raw.fields) {
        (Some(RawPreset::Nginx), _) | (None, None) => &NGINX_PRESET[..],
        (None, Some(_)) => &[],
    };
    for name in preset {
        let field = Field::parse(name).map_err(|err| ConfigError::new("preset", err))?;
        fields.push(OutputField {
            name: (*name).to_owned(),
            field,
        });
    }
    for (i, RawField { name, from }) in raw.fields.iter().flatten().enumerate() {
        let at = format!("fields[{i}]");
        check_output_name(&at, name)?;
        let field = Field::parse(from).map_err(|err| ConfigError::new(&at, err))?;
        if fields.iter().any(|f| f.name == *name) {
            return Err(ConfigError::new(
                &at,
                format!("`{name}` is already in the line (rename or exclude the first one)"),
            ));
        }
        fields.push(OutputField {
            name: name.clone(),
            field,
        });
    }
    for (i, name) in raw.exclude.iter().enumerate() {
        let Some(at) = fields.iter().position(|f| f.name == *name) else {
            return Err(ConfigError::new(
                format!("exclude[{i}]"),
                format!("`{name}` is not in the line"),
            ));
        };
        fields.remove(at);
    }
    for (from, to) in &raw.rename {
        let at = format!("rename.{from}");
        check_output_name(&at, to)?;
        if fields.iter().any(|f| f.name == *to) {
            return Err(ConfigError::new(
                &at,
                format!("`{to}` is already in the line"),
            ));
        }
        let Some(field) = fields.iter_mut().find(|f| f.name == *from) else {
            return Err(ConfigError::new(
                &at,
                format!("`{from}` is not in the line"),
            ));
        };
        field.name = to.clone();
    }
    if fields.is_empty() {
        return Err(ConfigError::new(
            "fields",
            "the line has no fields left; drop lines with `drop` rules instead",
        ));
    }
    if fields.len() > MAX_FIELDS {
        return Err(ConfigError::new(
            "fields",
            format!("{} fields; at most {MAX_FIELDS}", fields.len()),
        ));
    }
    Ok(fields)
}

/// Output names are JSON keys and logfmt keys: no spaces, quotes or `=`.
fn check_output_name(at: &str, name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:@".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(ConfigError::new(
            at,
            format!(
                "`{name}` is not a field name: use letters, digits, `_`, `-`, `.`, `:` and `@`"
            ),
        ))
    }
}

#[cfg(test)]
mod tests;
