//! The Loki stream labels of a line (`labels = { job = "tailgate", status_class
//! = "{status_class}" }`), with the guard Loki needs: every label value is a
//! stream, so at configure time labels may only use fields with few values
//! (unless `allow_high_cardinality = true`), and there are at most
//! [`MAX_LABELS`]. Rendered per line in `on-log`.

use std::collections::BTreeMap;

use tailgate_plugin_sdk::{ConfigError, LogRecord};

use crate::fields::Field;
use crate::redact::Redaction;
use crate::render::{write_field, Ctx, Memo, Style};
use crate::template::{Part, Template};

/// Most labels per line: Loki's default `max_label_names_per_series` is
/// 15, and the host adds its own.
pub const MAX_LABELS: usize = 8;
/// Longest rendered label value; longer ones are cut (Loki refuses values
/// over 2048 bytes by default).
const MAX_LABEL_VALUE: usize = 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    labels: Vec<(String, Template)>,
}

impl Labels {
    pub fn build(
        raw: &BTreeMap<String, String>,
        allow_high_cardinality: bool,
    ) -> Result<Labels, ConfigError> {
        if raw.len() > MAX_LABELS {
            return Err(ConfigError::new(
                "labels",
                format!(
                    "{} labels; at most {MAX_LABELS} (each value is a Loki stream: keep the rest in the line)",
                    raw.len()
                ),
            ));
        }
        let mut labels = Vec::with_capacity(raw.len());
        for (name, source) in raw {
            let at = format!("labels.{name}");
            check_label_name(&at, name)?;
            let template = Template::parse(source).map_err(|err| ConfigError::new(&at, err))?;
            if !allow_high_cardinality {
                if let Some(field) = template.fields().find(|field| !field.is_bounded()) {
                    return Err(ConfigError::new(
                        &at,
                        format!(
                            "`{source}` uses {}, which has unbounded values: Loki would make a stream \
                             per value. Keep it in the line and filter with `| json`, or set \
                             allow_high_cardinality = true",
                            describe(field)
                        ),
                    ));
                }
            }
            labels.push((name.clone(), template));
        }
        Ok(Labels { labels })
    }

    /// The fields the label values render.
    pub fn fields(&self) -> impl Iterator<Item = &Field> {
        self.labels
            .iter()
            .flat_map(|(_, template)| template.fields())
    }

    #[inline(always)]
    pub fn render(&self, rec: &LogRecord, redaction: &Redaction) -> Vec<(String, String)> {
        if self.labels.is_empty() {
            Vec::new()
        } else {
            self.render_some(rec, redaction)
        }
    }

    fn render_some(&self, rec: &LogRecord, redaction: &Redaction) -> Vec<(String, String)> {
        let ctx = Ctx {
            rec,
            redaction,
            memo: &Memo::default(),
        };
        self.labels
            .iter()
            .map(|(name, template)| {
                let mut value = String::new();
                for part in template.parts() {
                    match part {
                        Part::Literal(text) => value.push_str(text),
                        Part::Field(Field::Method) => {
                            value.push_str(label_method(rec.method.as_str()))
                        }
                        Part::Field(field) => write_field(field, Style::Label, &ctx, &mut value),
                    }
                }
                if value.len() > MAX_LABEL_VALUE {
                    let mut end = MAX_LABEL_VALUE;
                    while !value.is_char_boundary(end) {
                        end -= 1;
                    }
                    value.truncate(end);
                }
                (name.clone(), value)
            })
            .collect()
    }
}

/// Methods are client-chosen tokens: a label gets the standard ones, and
/// `OTHER` for the rest, so a client cannot mint streams.
fn label_method(method: &str) -> &str {
    match method {
        "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" | "CONNECT" | "TRACE" => {
            method
        }
        _ => "OTHER",
    }
}

fn describe(field: &Field) -> String {
    match field {
        Field::Var(name) => format!("var `{name}`"),
        Field::RequestHeader(name) => format!("request header `{name}`"),
        Field::ResponseHeader(name) => format!("response header `{name}`"),
        other => format!("`{}`", field_name(other)),
    }
}

/// The catalog name of a field, for messages.
fn field_name(field: &Field) -> &'static str {
    match field {
        Field::TimeIso8601 => "time",
        Field::TimeLocal => "time_local",
        Field::Timestamp => "timestamp",
        Field::Msec => "msec",
        Field::RemoteAddr => "remote_addr",
        Field::RemotePort => "remote_port",
        Field::ClientIp => "client_ip",
        Field::RequestLine => "request",
        Field::RequestUri => "request_uri",
        Field::Path => "path",
        Field::Args => "args",
        Field::BodyBytesSent => "body_bytes_sent",
        Field::RequestLength => "request_length",
        Field::RequestTime => "request_time",
        Field::UpstreamResponseTime => "upstream_response_time",
        Field::RequestId => "request_id",
        _ => "this field",
    }
}

/// Loki label names: `[a-zA-Z_][a-zA-Z0-9_]*`, and `__` is reserved.
fn check_label_name(at: &str, name: &str) -> Result<(), ConfigError> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(ConfigError::new(
            at,
            format!("`{name}` is not a Loki label name (letters, digits and `_`, not starting with a digit)"),
        ));
    }
    if name.starts_with("__") {
        return Err(ConfigError::new(
            at,
            format!("`{name}`: names starting with `__` are reserved by Loki"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::tests::record;

    fn table(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn refused(entries: &[(&str, &str)]) -> String {
        Labels::build(&table(entries), false)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn labels_render_bounded_fields_and_literals() {
        let labels = Labels::build(
            &table(&[
                ("job", "tailgate"),
                ("host", "{http_host}"),
                ("status_class", "{status_class}"),
                ("route", "r-{route}"),
                ("method", "{request_method}"),
                ("limited", "{limit_req_status}"),
            ]),
            false,
        )
        .expect("valid");
        let mut rec = record();
        rec.method = tailgate_plugin_sdk::Method::from_name("PROPFIND");
        rec.status = 404;
        assert_eq!(
            labels.render(&rec, &Redaction::default()),
            vec![
                ("host".to_owned(), "docs.example.com:8443".to_owned()),
                ("job".to_owned(), "tailgate".to_owned()),
                ("limited".to_owned(), "PASSED".to_owned()),
                ("method".to_owned(), "OTHER".to_owned()),
                ("route".to_owned(), "r-docs".to_owned()),
                ("status_class".to_owned(), "4xx".to_owned()),
            ]
        );
    }

    #[test]
    fn unbounded_fields_are_refused_unless_allowed() {
        for (source, what) in [
            ("{client_ip}", "`client_ip`"),
            ("{request_uri}", "`request_uri`"),
            ("{request_id}", "`request_id`"),
            ("ua={http_user_agent}", "request header `user-agent`"),
            ("{var:session}", "var `session`"),
        ] {
            let err = refused(&[("x", source)]);
            assert!(
                err.starts_with(&format!(
                    "labels.x: `{source}` uses {what}, which has unbounded values"
                )),
                "{err}"
            );
        }
        let allowed = Labels::build(&table(&[("ip", "{client_ip}")]), true).expect("allowed");
        assert_eq!(
            allowed.render(&record(), &Redaction::default()),
            vec![("ip".to_owned(), "198.51.100.4".to_owned())]
        );
    }

    #[test]
    fn label_count_and_names_are_checked() {
        let nine: Vec<(String, String)> =
            (0..9).map(|i| (format!("l{i}"), "x".to_owned())).collect();
        let nine: BTreeMap<String, String> = nine.into_iter().collect();
        assert!(Labels::build(&nine, true)
            .expect_err("refused")
            .to_string()
            .starts_with("labels: 9 labels; at most 8"));
        assert_eq!(
            refused(&[("9lives", "x")]),
            "labels.9lives: `9lives` is not a Loki label name (letters, digits and `_`, not starting with a digit)"
        );
        assert_eq!(
            refused(&[("status-class", "x")]),
            "labels.status-class: `status-class` is not a Loki label name (letters, digits and `_`, not starting with a digit)"
        );
        assert_eq!(
            refused(&[("__name__", "x")]),
            "labels.__name__: `__name__`: names starting with `__` are reserved by Loki"
        );
        assert!(refused(&[("x", "{stauts}")]).starts_with("labels.x: unknown field `stauts`"));
    }
}
