//! Writing one access-log line in `on-log`: a JSON object (nginx
//! `log_format escape=json`), logfmt `key=value` pairs, or a `{field}`
//! template (nginx's default escaping: empty values as `-`).

use tailgate_plugin_sdk::LogRecord;

use crate::decimal;
use crate::fields::{Field, Value};
use crate::redact::Redaction;
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

    pub fn render(&self, rec: &LogRecord, redaction: &Redaction) -> String {
        let mut out = String::with_capacity(512);
        match self {
            LineFormat::Json(fields) => {
                out.push('{');
                for (i, output) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    // Output names are letters, digits and `_-.:@`
                    // (checked at configure): nothing to escape.
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

/// A value as plain text; `empty` stands for an empty or absent value.
pub fn text_value(value: &Value<'_>, empty: &str, out: &mut String) {
    match value {
        Value::Text(text) if text.is_empty() => out.push_str(empty),
        Value::Text(text) => out.push_str(text),
        Value::Int(n) => decimal::push_decimal(out, *n),
        Value::Seconds(secs) if secs.is_finite() => decimal::push_seconds(out, *secs),
        Value::Millis(ms) => decimal::push_millis_as_seconds(out, *ms),
        Value::Seconds(_) | Value::Null => out.push_str(empty),
    }
}

fn json_value(value: &Value<'_>, out: &mut String) {
    match value {
        Value::Text(text) => json_string(text, out),
        Value::Seconds(secs) if !secs.is_finite() => out.push_str("null"),
        Value::Null => out.push_str("null"),
        Value::Int(_) | Value::Seconds(_) | Value::Millis(_) => text_value(value, "null", out),
    }
}

/// The bytes a JSON string must escape: `"`, `\`, controls and DEL.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table[0x7f] = true;
    table
};

/// A JSON string, escaped like nginx `escape=json`: `"` and `\` escaped,
/// control characters as `\n`, `\r`, `\t` or `\u00XX`.
fn json_string(text: &str, out: &mut String) {
    out.reserve(text.len() + 2);
    out.push('"');
    // Runs of bytes that need no escape are copied whole; every byte that
    // does is ASCII, so the slices always end on a char boundary.
    let bytes = text.as_bytes();
    let mut run = 0;
    while let Some(at) = next_escape(bytes, run) {
        out.push_str(&text[run..at]);
        match bytes[at] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            byte => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0xf)]));
            }
        }
        run = at + 1;
    }
    out.push_str(&text[run..]);
    out.push('"');
}

/// The index of the first byte at or after `from` that JSON escapes.
/// Looks at eight bytes per step (most values have nothing to escape).
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Whether any byte of `word` is below `n` (n <= 0x80); exact as a
    // whole, though not per byte (bit tricks, "hasless").
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS != 0;
    let equal = |word: u64, b: u8| below(word ^ (ONES * u64::from(b)), 1);
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_ne_bytes(word);
        if below(word, 0x20) || equal(word, b'"') || equal(word, b'\\') || equal(word, 0x7f) {
            break;
        }
        at += 8;
    }
    bytes[at..]
        .iter()
        .position(|&b| NEEDS_ESCAPE[usize::from(b)])
        .map(|offset| at + offset)
}

/// A logfmt value: bare when it has no space, `=`, `"` or control
/// character, else quoted with `\"`, `\\`, `\n`... escapes; empty as `""`.
fn logfmt_value(value: &Value<'_>, out: &mut String) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::tests::record;

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
    fn every_escaped_byte_is_found_wherever_it_sits_in_a_word() {
        // The word-at-a-time scan against a byte-by-byte one, for each
        // byte that needs escaping (and some that do not) at each offset.
        let naive = |text: &str| {
            let mut out = String::from("\"");
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
            out
        };
        for special in [
            '"', '\\', '\n', '\u{0}', '\u{1f}', '\u{7f}', ' ', '~', 'é', '\u{80}',
        ] {
            for at in 0..20 {
                let text: String = (0..20)
                    .map(|i| if i == at { special } else { 'a' })
                    .collect();
                let mut out = String::new();
                json_string(&text, &mut out);
                assert_eq!(out, naive(&text), "{special:?} at {at}");
            }
        }
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
