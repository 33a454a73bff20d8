//! Writing one field's value into a line (or a label value) being built in
//! `on-log`: the fields every line has straight from the record, with no
//! string in between; the rare ones through [`Field::render`]. Also the
//! value syntaxes: JSON strings escaped like nginx `escape=json`, logfmt
//! values quoted only when they must be, templates' `-` for empty values.

use std::cell::RefCell;
use std::net::IpAddr;

use tailgate_plugin_sdk::template::push_ip;
use tailgate_plugin_sdk::{CacheStatus, LogRecord, Method};

use crate::decimal;
use crate::fields::{header_value, Field, Value};
use crate::json;
use crate::redact::Redaction;
use crate::time_format::Clock;

/// How values are written: the line's format, or a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// JSON values: strings quoted and escaped, absent values `null`.
    Json,
    /// The inside of a JSON string whose quotes the line writes itself:
    /// only for fields whose JSON value is always a string
    /// ([`json_is_string`]).
    JsonInner,
    /// logfmt values: bare unless they need quotes; absent values empty.
    Logfmt,
    /// Template text: as is, empty or absent values as `-`.
    Template,
    /// Label values: as is, absent values empty.
    Label,
}

/// What a shaper keeps from one line to the next to skip work: the
/// current second's timestamp and the last addresses, as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memo {
    pub clock: Clock,
    peer: AddressText,
    client: AddressText,
}

/// The last address written and its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct AddressText(RefCell<Option<(IpAddr, String)>>);

impl AddressText {
    #[inline(always)]
    fn push(&self, ip: IpAddr, out: &mut String) {
        if let Some((seen, text)) = &*self.0.borrow() {
            if *seen == ip {
                out.push_str(text);
                return;
            }
        }
        self.push_new(ip, out);
    }

    /// [`AddressText::push`] of another address than the last.
    #[cold]
    #[inline(never)]
    fn push_new(&self, ip: IpAddr, out: &mut String) {
        let mut text = String::with_capacity(16);
        push_address(ip, &mut text);
        out.push_str(&text);
        *self.0.borrow_mut() = Some((ip, text));
    }
}

/// What one line is rendered from.
pub struct Ctx<'a> {
    pub rec: &'a LogRecord,
    pub redaction: &'a Redaction,
    pub memo: &'a Memo,
}

/// Whether `field`'s JSON value is always a string (never a number or
/// `null`), so a JSON line can write its quotes with the key.
pub fn json_is_string(field: &Field) -> bool {
    !matches!(
        field,
        Field::Msec
            | Field::RemotePort
            | Field::Status
            | Field::BodyBytesSent
            | Field::RequestLength
            | Field::RequestTime
            | Field::UpstreamResponseTime
            | Field::UpstreamAddr
    )
}

/// Text that is never empty and has nothing JSON escapes nor logfmt
/// quotes but maybe spaces (`spaced`: logfmt quotes it): times, addresses,
/// enum names. Quoted in JSON, written as is otherwise: `$write` writes it
/// to `$out` between [`open`] and [`close`] (a macro, not a closure, so
/// that it is inlined).
macro_rules! plain {
    ($style:expr, $spaced:expr, $out:ident, $write:expr) => {{
        let quoted = open($style, $spaced, $out);
        $write;
        close(quoted, $out);
    }};
}

/// `field`'s value for the record, written in `style`. The same bytes as
/// [`write_value`] of [`Field::render`], without building the value.
#[inline(always)]
pub fn write_field(field: &Field, style: Style, ctx: &Ctx<'_>, out: &mut String) {
    let rec = ctx.rec;
    let clock = &ctx.memo.clock;
    match field {
        Field::TimeIso8601 => plain!(style, false, out, clock.iso8601(rec.time_unix_ms, out)),
        Field::TimeLocal => plain!(style, true, out, clock.local(rec.time_unix_ms, out)),
        Field::Timestamp => plain!(
            style,
            false,
            out,
            clock.rfc3339_millis(rec.time_unix_ms, out)
        ),
        Field::Msec => decimal::push_millis_as_seconds(out, rec.time_unix_ms),
        Field::RemoteAddr => plain!(
            style,
            false,
            out,
            ctx.memo.peer.push(ctx.redaction.mask(rec.peer_ip), out)
        ),
        Field::RemotePort => decimal::push_decimal(out, u64::from(rec.peer_port)),
        Field::ClientIp => plain!(
            style,
            false,
            out,
            ctx.memo.client.push(ctx.redaction.mask(rec.client_ip), out)
        ),
        Field::Method => match &rec.method {
            Method::Other(name) => text(style, name, out),
            method => plain!(style, false, out, out.push_str(method.as_str())),
        },
        Field::Scheme => plain!(style, false, out, out.push_str(rec.scheme.as_str())),
        Field::Protocol => plain!(style, false, out, out.push_str(rec.protocol.as_str())),
        Field::RequestUri => text(style, &ctx.redaction.uri(&rec.uri), out),
        Field::Path => text(
            style,
            rec.uri.split_once('?').map_or(rec.uri.as_str(), |(p, _)| p),
            out,
        ),
        Field::Host => text(style, &rec.host, out),
        Field::HttpHost => text(
            style,
            header_value(&rec.http_host, "host", ctx.redaction),
            out,
        ),
        Field::Status => decimal::push_decimal(out, u64::from(rec.status)),
        Field::StatusClass => plain!(style, false, out, {
            out.push(char::from(b'0' + (rec.status / 100 % 10) as u8));
            out.push_str("xx");
        }),
        Field::BodyBytesSent => decimal::push_decimal(out, rec.bytes_sent),
        Field::RequestLength => decimal::push_decimal(out, rec.bytes_received),
        Field::RequestTime => seconds(style, Some(rec.request_time), out),
        Field::UpstreamResponseTime => seconds(style, rec.upstream_response_time, out),
        Field::UpstreamAddr => match rec.upstream_addr.as_deref() {
            Some(addr) => text(style, addr, out),
            None => null(style, out),
        },
        Field::UpstreamCacheStatus => {
            text(style, rec.cache_status.map_or("", CacheStatus::as_str), out)
        }
        Field::RequestId => text(style, &rec.request_id, out),
        Field::Route => text(style, &rec.route, out),
        Field::Var(name) => text(style, rec.var(name).unwrap_or(""), out),
        Field::RequestHeader(name) if &**name == "user-agent" => text(
            style,
            header_value(&rec.user_agent, "user-agent", ctx.redaction),
            out,
        ),
        Field::RequestLine | Field::Args | Field::RequestHeader(_) | Field::ResponseHeader(_) => {
            write_value(style, &field.render(rec, ctx.redaction), out)
        }
    }
}

/// A rendered value, written in `style`.
pub fn write_value(style: Style, value: &Value<'_>, out: &mut String) {
    match value {
        Value::Text(value) => text(style, value, out),
        Value::Int(n) => decimal::push_decimal(out, *n),
        Value::Seconds(secs) => seconds(style, Some(*secs), out),
        Value::Millis(ms) => decimal::push_millis_as_seconds(out, *ms),
        Value::Null => null(style, out),
    }
}

/// No value: JSON `null`, a template's `-`, nothing in logfmt and labels.
#[inline(always)]
fn null(style: Style, out: &mut String) {
    match style {
        // `JsonInner` never has one (see `json_is_string`).
        Style::Json | Style::JsonInner => out.push_str("null"),
        Style::Template => out.push('-'),
        Style::Logfmt | Style::Label => {}
    }
}

/// Seconds with three decimals; absent or not finite, no value.
#[inline(always)]
fn seconds(style: Style, secs: Option<f64>, out: &mut String) {
    match secs {
        Some(secs) if secs.is_finite() => decimal::push_seconds(out, secs),
        _ => null(style, out),
    }
}

/// Starts a [`plain`] value: its opening quote if it has one.
#[inline(always)]
fn open(style: Style, spaced: bool, out: &mut String) -> bool {
    let quoted = match style {
        Style::Json => true,
        Style::Logfmt => spaced,
        Style::JsonInner | Style::Template | Style::Label => false,
    };
    if quoted {
        out.push('"');
    }
    quoted
}

/// Ends a [`plain`] value.
#[inline(always)]
fn close(quoted: bool, out: &mut String) {
    if quoted {
        out.push('"');
    }
}

/// An address: digits, hex digits, dots and colons.
fn push_address(ip: IpAddr, out: &mut String) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                decimal::push_decimal(out, u64::from(octet));
            }
        }
        IpAddr::V6(_) => {
            let mut text = Vec::with_capacity(40);
            push_ip(ip, &mut text);
            out.push_str(std::str::from_utf8(&text).unwrap_or_default());
        }
    }
}

/// Text of the record in `style`.
#[inline(always)]
fn text(style: Style, text: &str, out: &mut String) {
    match style {
        Style::Json => json::string(text, out),
        Style::JsonInner => json::escaped(text, out),
        Style::Logfmt => logfmt_text(text, out),
        Style::Template if text.is_empty() => out.push('-'),
        Style::Template | Style::Label => out.push_str(text),
    }
}

/// A logfmt value: bare when it has no space, `=`, `"` or control
/// character, else quoted with `\"`, `\\`, `\n`... escapes; empty as `""`.
fn logfmt_text(text: &str, out: &mut String) {
    let bare = !text.is_empty()
        && !text
            .chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || c == '\\' || c.is_control());
    if bare {
        out.push_str(text);
    } else {
        json::string(text, out);
    }
}

#[cfg(test)]
mod tests;
