//! Writing one access-log line in `on-log`: a JSON object (nginx
//! `log_format escape=json`), logfmt `key=value` pairs, or a `{field}`
//! template (nginx's default escaping: empty values as `-`).

use crate::fields::Field;
use crate::render::{json_is_string, write_field, Ctx, Style};
use crate::template::{Part, Template};

/// One field of a JSON or logfmt line, under its output name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputField {
    pub name: String,
    pub field: Field,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineFormat {
    Json(Vec<OutputField>),
    Logfmt(Vec<OutputField>),
    Template(Template),
}

impl LineFormat {
    /// The fields the line renders.
    pub fn fields(&self) -> Box<dyn Iterator<Item = &Field> + '_> {
        match self {
            LineFormat::Json(fields) | LineFormat::Logfmt(fields) => {
                Box::new(fields.iter().map(|output| &output.field))
            }
            LineFormat::Template(template) => Box::new(template.fields()),
        }
    }

    /// The line for `rec` (`on-log` renders from a [`Plan`] made once).
    #[cfg(test)]
    pub fn render(
        &self,
        rec: &tailgate_plugin_sdk::LogRecord,
        redaction: &crate::redact::Redaction,
    ) -> String {
        let ctx = Ctx {
            rec,
            redaction,
            memo: &crate::render::Memo::default(),
        };
        Plan::new(self).render(&ctx, 512)
    }
}

/// A line format made ready at configure time: the text between the
/// values (JSON keys with their quotes, commas and colons, logfmt keys,
/// template literals) as one string before each field. A JSON value that
/// is always a string gets its quotes there too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    steps: Vec<Step>,
    /// After the last value (`}` in JSON).
    tail: Box<str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    before: Box<str>,
    field: Field,
    style: Style,
}

impl Plan {
    pub fn new(format: &LineFormat) -> Plan {
        let mut steps = Vec::new();
        let mut text = String::new();
        let mut step = |text: &mut String, field: &Field, style: Style| {
            steps.push(Step {
                before: std::mem::take(text).into_boxed_str(),
                field: field.clone(),
                style,
            });
        };
        match format {
            LineFormat::Json(fields) => {
                text.push('{');
                for (i, output) in fields.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    // Output names are letters, digits and `_-.:@`
                    // (checked at configure): nothing to escape.
                    text.push('"');
                    text.push_str(&output.name);
                    text.push_str("\":");
                    if json_is_string(&output.field) {
                        text.push('"');
                        step(&mut text, &output.field, Style::JsonInner);
                        text.push('"');
                    } else {
                        step(&mut text, &output.field, Style::Json);
                    }
                }
                text.push('}');
            }
            LineFormat::Logfmt(fields) => {
                for (i, output) in fields.iter().enumerate() {
                    if i > 0 {
                        text.push(' ');
                    }
                    text.push_str(&output.name);
                    text.push('=');
                    step(&mut text, &output.field, Style::Logfmt);
                }
            }
            LineFormat::Template(template) => {
                for part in template.parts() {
                    match part {
                        Part::Literal(literal) => text.push_str(literal),
                        Part::Field(field) => step(&mut text, field, Style::Template),
                    }
                }
            }
        }
        Plan {
            steps,
            tail: text.into_boxed_str(),
        }
    }

    /// The line, built in a buffer of `capacity` bytes (grown if short).
    pub fn render(&self, ctx: &Ctx<'_>, capacity: usize) -> String {
        let mut out = String::with_capacity(capacity);
        for step in &self.steps {
            out.push_str(&step.before);
            write_field(&step.field, step.style, ctx, &mut out);
        }
        out.push_str(&self.tail);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::tests::record;
    use crate::redact::Redaction;

    fn fields(names: &[&str]) -> Vec<OutputField> {
        names
            .iter()
            .map(|name| OutputField {
                name: (*name).to_owned(),
                field: Field::parse(name).expect("known"),
            })
            .collect()
    }

    #[test]
    fn json_lines_escape_like_nginx_and_keep_numbers_numeric() {
        let mut rec = record();
        rec.user_agent = "a\"b\\c\nd\u{1}é".into();
        rec.upstream_response_time = None;
        rec.request_time = 1.0;
        let line = LineFormat::Json(fields(&[
            "status",
            "request_time",
            "upstream_response_time",
            "http_user_agent",
            "msec",
        ]))
        .render(&rec, &Redaction::default());
        assert_eq!(
            line,
            r#"{"status":200,"request_time":1.000,"upstream_response_time":null,"http_user_agent":"a\"b\\c\nd\u0001é","msec":1735787045.678}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(parsed["http_user_agent"], "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn request_time_rounds_to_milliseconds() {
        let mut rec = record();
        for (secs, text) in [
            (0.012_345, "0.012"),
            (0.0125, "0.013"),
            (12.3456, "12.346"),
            (0.0, "0.000"),
        ] {
            rec.request_time = secs;
            let line =
                LineFormat::Logfmt(fields(&["request_time"])).render(&rec, &Redaction::default());
            assert_eq!(line, format!("request_time={text}"), "{secs}");
        }
        rec.request_time = f64::NAN;
        let line = LineFormat::Json(fields(&["request_time"])).render(&rec, &Redaction::default());
        assert_eq!(line, r#"{"request_time":null}"#);
    }

    #[test]
    fn logfmt_quotes_only_what_needs_it() {
        let mut rec = record();
        rec.upstream_response_time = None;
        let line = LineFormat::Logfmt(fields(&[
            "request_method",
            "request_uri",
            "status",
            "http_user_agent",
            "upstream_cache_status",
            "upstream_response_time",
        ]))
        .render(&rec, &Redaction::default());
        assert_eq!(
            line,
            r#"request_method=GET request_uri="/search?q=tail&token=s3cret" status=200 http_user_agent="curl/8 \"quoted\"" upstream_cache_status="" upstream_response_time="#
        );
    }

    #[test]
    fn templates_print_empty_values_as_a_dash() {
        let template = Template::parse(
            "{remote_addr} - - [{time_local}] \"{request}\" {status} {body_bytes_sent} \"{http_referer}\" \"{http_user_agent}\" {upstream_cache_status}",
        )
        .expect("parses");
        let mut rec = record();
        rec.referer = String::new().into();
        let line = LineFormat::Template(template).render(&rec, &Redaction::default());
        assert_eq!(
            line,
            "10.0.0.2 - - [02/Jan/2025:03:04:05 +0000] \"GET /search?q=tail&token=s3cret HTTP/1.1\" 200 1234 \"-\" \"curl/8 \"quoted\"\" -"
        );
    }
}
