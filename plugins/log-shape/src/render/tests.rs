//! The line writers against the way lines were first written: every field
//! of the catalog, in every format and as a label, on records with odd
//! values, against [`Field::render`] and the original value syntax; the
//! remembered timestamp and addresses across changing records.

use std::collections::BTreeMap;
use std::net::IpAddr;

use tailgate_plugin_sdk::{Header, Method};

use super::*;
use crate::config::RawRedact;
use crate::fields::tests::{record, CATALOG};
use crate::labels::Labels;
use crate::line_format::{LineFormat, OutputField, Plan};
use crate::template::{Part, Template};

/// The value syntax as the line was first written.
mod original {
    use super::*;

    fn push_seconds(out: &mut String, secs: f64) {
        let ms = (secs.max(0.0) * 1000.0).round() as u64;
        out.push_str(&format!("{}.{:03}", ms / 1000, ms % 1000));
    }

    pub fn text_value(value: &Value<'_>, empty: &str, out: &mut String) {
        match value {
            Value::Text(text) if text.is_empty() => out.push_str(empty),
            Value::Text(text) => out.push_str(text),
            Value::Int(n) => out.push_str(&n.to_string()),
            Value::Seconds(secs) if secs.is_finite() => push_seconds(out, *secs),
            Value::Millis(ms) => out.push_str(&format!("{}.{:03}", ms / 1000, ms % 1000)),
            Value::Seconds(_) | Value::Null => out.push_str(empty),
        }
    }

    pub fn json_string(text: &str, out: &mut String) {
        out.push('"');
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    pub fn json_value(value: &Value<'_>, out: &mut String) {
        match value {
            Value::Text(text) => json_string(text, out),
            Value::Seconds(secs) if !secs.is_finite() => out.push_str("null"),
            Value::Null => out.push_str("null"),
            Value::Int(_) | Value::Seconds(_) | Value::Millis(_) => text_value(value, "null", out),
        }
    }

    pub fn logfmt_value(value: &Value<'_>, out: &mut String) {
        let Value::Text(text) = value else {
            return text_value(value, "", out);
        };
        let bare = !text.is_empty()
            && !text
                .chars()
                .any(|c| c == ' ' || c == '=' || c == '"' || c == '\\' || c.is_control());
        if bare {
            out.push_str(text);
        } else {
            json_string(text, out);
        }
    }

    pub fn line(format: &LineFormat, rec: &LogRecord, redaction: &Redaction) -> String {
        let mut out = String::new();
        match format {
            LineFormat::Json(fields) => {
                out.push('{');
                for (i, output) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push('"');
                    out.push_str(&output.name);
                    out.push_str("\":");
                    json_value(&output.field.render(rec, redaction), &mut out);
                }
                out.push('}');
            }
            LineFormat::Logfmt(fields) => {
                for (i, output) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(&output.name);
                    out.push('=');
                    logfmt_value(&output.field.render(rec, redaction), &mut out);
                }
            }
            LineFormat::Template(template) => {
                for part in template.parts() {
                    match part {
                        Part::Literal(text) => out.push_str(text),
                        Part::Field(field) => {
                            text_value(&field.render(rec, redaction), "-", &mut out)
                        }
                    }
                }
            }
        }
        out
    }
}

/// Records with the values that take the other paths: odd numbers, times,
/// addresses, methods and text that needs escaping or quoting.
fn records() -> Vec<LogRecord> {
    let base = record();
    let ip = |text: &str| -> IpAddr { text.parse().expect("an address") };
    let mut out = vec![base.clone()];
    let mut add = |change: &dyn Fn(&mut LogRecord)| {
        let mut rec = base.clone();
        change(&mut rec);
        out.push(rec);
    };
    add(&|r| r.cache_status = Some(CacheStatus::Revalidated));
    add(&|r| {
        r.upstream_response_time = None;
        r.upstream_addr = None.into();
        r.request_time = f64::NAN;
    });
    add(&|r| r.request_time = f64::INFINITY);
    add(&|r| r.request_time = -0.5);
    add(&|r| r.request_time = 0.0005);
    add(&|r| r.request_time = 1e300);
    add(&|r| r.upstream_response_time = Some(f64::NEG_INFINITY));
    add(&|r| {
        r.user_agent = "tab\there \"q\" back\\slash \u{1}\u{7f}\u{85} é ü 中".into();
        r.http_host = String::new().into();
        r.host = "h=x y".into();
        r.request_id = String::new().into();
    });
    add(&|r| r.user_agent = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101".into());
    add(&|r| {
        r.method = Method::Other("PURGE".into());
        r.uri = "/a b?x=\"1\"&token=2&q".into();
    });
    add(&|r| r.method = Method::Other("BAD\"ONE".into()));
    add(&|r| {
        r.peer_ip = ip("2001:db8::1");
        r.client_ip = ip("::ffff:198.51.100.9");
    });
    add(&|r| {
        r.peer_ip = ip("255.255.255.255");
        r.client_ip = ip("0.0.0.0");
        r.peer_port = 0;
    });
    add(&|r| {
        r.client_ip = ip("10.20.30.40");
        r.peer_port = u16::MAX;
    });
    add(&|r| {
        r.status = 0;
        r.bytes_sent = u64::MAX;
        r.bytes_received = 0;
    });
    add(&|r| {
        r.status = u16::MAX;
        r.bytes_sent = 10_000;
        r.bytes_received = 99_999_999;
    });
    add(&|r| r.status = 99);
    for ms in [
        0,
        999,
        1_735_787_045_999,
        1_735_787_046_000,
        1_709_208_000_000,
        1_704_067_199_999,
        1_704_067_200_000,
        253_402_300_799_999,
        253_402_300_800_000,
        u64::MAX,
    ] {
        add(&move |r| r.time_unix_ms = ms);
    }
    add(&|r| {
        r.request_headers
            .push(Header::new("x-forwarded-for", "a\"b"));
        r.response_headers.clear();
        r.vars = Vec::new().into();
        r.referer = String::new().into();
    });
    out
}

fn redactions() -> Vec<Redaction> {
    vec![
        Redaction::default(),
        Redaction::build(&RawRedact {
            query_params: vec!["token".into()],
            headers: vec!["authorization".into(), "user-agent".into(), "host".into()],
            ip_truncate: true,
            ..RawRedact::default()
        })
        .expect("valid"),
    ]
}

fn catalog() -> Vec<OutputField> {
    CATALOG
        .iter()
        .enumerate()
        .map(|(i, (name, _))| OutputField {
            name: format!("f{i}"),
            field: Field::parse(name).unwrap_or_else(|err| panic!("{err}")),
        })
        .collect()
}

#[test]
fn lines_are_byte_for_byte_the_original_ones() {
    let fields = catalog();
    let source: String = CATALOG
        .iter()
        .map(|(name, _)| format!("<{{{name}}}>"))
        .collect();
    let mut formats = vec![
        LineFormat::Json(fields.clone()),
        LineFormat::Logfmt(fields.clone()),
        LineFormat::Template(Template::parse(&source).expect("parses")),
        LineFormat::Template(Template::parse("{status}{request_time}é{{x}}").expect("parses")),
        LineFormat::Template(Template::parse("just text").expect("parses")),
    ];
    // Each field alone too: first, last, only.
    for field in &fields {
        formats.push(LineFormat::Json(vec![field.clone()]));
        formats.push(LineFormat::Logfmt(vec![field.clone()]));
    }
    for format in &formats {
        let plan = Plan::new(format);
        for redaction in &redactions() {
            // One memo across the records: what a shaper remembers from
            // the line before never shows.
            let memo = Memo::default();
            for rec in records().iter().chain(records().iter().rev()) {
                let expected = original::line(format, rec, redaction);
                let ctx = Ctx {
                    rec,
                    redaction,
                    memo: &memo,
                };
                assert_eq!(plan.render(&ctx, 0), expected);
                assert_eq!(format.render(rec, redaction), expected);
            }
        }
    }
}

#[test]
fn label_values_are_the_original_ones() {
    for (name, _) in CATALOG {
        // The method is a label of its own kind (standard methods only).
        if name == "request_method" {
            continue;
        }
        let source = format!("[{{{name}}}]");
        let raw = BTreeMap::from([("l".to_owned(), source.clone())]);
        let labels = Labels::build(&raw, true).expect("valid");
        let template = Template::parse(&source).expect("parses");
        for redaction in &redactions() {
            for rec in &records() {
                let mut expected = String::new();
                for part in template.parts() {
                    match part {
                        Part::Literal(text) => expected.push_str(text),
                        Part::Field(field) => {
                            original::text_value(&field.render(rec, redaction), "", &mut expected)
                        }
                    }
                }
                assert_eq!(labels.render(rec, redaction), [("l".to_owned(), expected)]);
            }
        }
    }
}

#[test]
fn json_strings_are_told_apart_from_numbers_and_null() {
    // A JSON value written inside quotes the line writes must never be a
    // number or null, whatever the record.
    for output in catalog() {
        let line = LineFormat::Json(vec![output.clone()]);
        for rec in &records() {
            let value = output.field.render(rec, &Redaction::default());
            if json_is_string(&output.field) {
                assert!(matches!(value, Value::Text(_)), "{:?}", output.field);
            }
            let rendered = line.render(rec, &Redaction::default());
            let parsed: serde_json::Value = serde_json::from_str(&rendered).expect("JSON");
            if json_is_string(&output.field) {
                assert!(parsed[&output.name].is_string(), "{rendered}");
            }
        }
    }
}
