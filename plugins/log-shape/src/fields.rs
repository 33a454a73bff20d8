//! The field catalog: every value a line, a template or a label can take
//! from the WIT `log-record`, under nginx's variable names where nginx has
//! one (`remote_addr`, `request_uri`, `body_bytes_sent`, `http_<header>`,
//! ...). Field names are resolved once at configure time into [`Field`];
//! each line renders them in `on-log` into [`Value`]s, redaction applied.

use std::borrow::Cow;

use tailgate_plugin_sdk::{CacheStatus, Header, LogFieldSet, LogRecord};

use crate::redact::{Redaction, REDACTED};
use crate::time_format;

/// A field of the log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// nginx `$time_iso8601`: `2025-01-02T03:04:05+00:00`.
    TimeIso8601,
    /// nginx `$time_local`: `02/Jan/2025:03:04:05 +0000`.
    TimeLocal,
    /// RFC 3339 with milliseconds, UTC, as the host gives it.
    Timestamp,
    /// nginx `$msec`: `1735787045.678`.
    Msec,
    /// The socket peer's IP (nginx `$remote_addr`).
    RemoteAddr,
    RemotePort,
    ClientIp,
    Method,
    Scheme,
    Protocol,
    /// `GET /a?b HTTP/1.1` (nginx `$request`).
    RequestLine,
    /// Path and query as received (nginx `$request_uri`).
    RequestUri,
    Path,
    /// The query without `?` (nginx `$args`).
    Args,
    /// Host without port, as routed.
    Host,
    /// The Host header as sent (nginx `$http_host`; the authority for
    /// HTTP/2); the host fills in the routed host when the request named
    /// neither.
    HttpHost,
    Status,
    /// `2xx`, `4xx`, ...
    StatusClass,
    BodyBytesSent,
    /// Request body bytes received.
    RequestLength,
    RequestTime,
    UpstreamResponseTime,
    UpstreamAddr,
    UpstreamCacheStatus,
    RequestId,
    Route,
    /// A var set by an earlier hook (`limit_req_status`, `var:<name>`).
    Var(Box<str>),
    /// A request header, lower case (`http_<name>`, `request_header:<name>`).
    RequestHeader(Box<str>),
    /// A response header, lower case (`sent_http_<name>`,
    /// `response_header:<name>`).
    ResponseHeader(Box<str>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error(
        "unknown field `{0}`; known: time, time_local, timestamp, msec, remote_addr, remote_port, \
         client_ip, request_method, scheme, server_protocol, request, request_uri, path, args, \
         host, http_host, status, status_class, body_bytes_sent, request_length, request_time, \
         upstream_response_time, upstream_addr, upstream_cache_status, http_user_agent, \
         http_referer, request_id, route, limit_req_status, var:<name>, http_<header>, \
         request_header:<name>, sent_http_<header>, response_header:<name>"
    )]
    Unknown(String),
    #[error("field `{0}`: `{1}` is not a valid header name")]
    BadHeader(String, String),
    #[error("field `{0}`: a var name takes letters, digits, `_`, `-` and `.`")]
    BadVar(String),
}

/// A rendered field.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Text(Cow<'a, str>),
    Int(u64),
    /// Seconds, printed with 3 decimals like nginx.
    Seconds(f64),
    /// Unix milliseconds, printed as seconds with 3 decimals (`$msec`).
    Millis(u64),
    /// No value (e.g. no upstream was asked).
    Null,
}

impl Field {
    pub fn parse(name: &str) -> Result<Field, FieldError> {
        let field = match name {
            "time" | "time_iso8601" => Field::TimeIso8601,
            "time_local" => Field::TimeLocal,
            "timestamp" => Field::Timestamp,
            "msec" => Field::Msec,
            "remote_addr" => Field::RemoteAddr,
            "remote_port" => Field::RemotePort,
            "client_ip" => Field::ClientIp,
            "request_method" => Field::Method,
            "scheme" => Field::Scheme,
            "server_protocol" => Field::Protocol,
            "request" => Field::RequestLine,
            "request_uri" => Field::RequestUri,
            "path" => Field::Path,
            "args" => Field::Args,
            "host" => Field::Host,
            "http_host" => Field::HttpHost,
            "status" => Field::Status,
            "status_class" => Field::StatusClass,
            "body_bytes_sent" => Field::BodyBytesSent,
            "request_length" => Field::RequestLength,
            "request_time" => Field::RequestTime,
            "upstream_response_time" => Field::UpstreamResponseTime,
            "upstream_addr" => Field::UpstreamAddr,
            "upstream_cache_status" => Field::UpstreamCacheStatus,
            "request_id" => Field::RequestId,
            "route" => Field::Route,
            "limit_req_status" => Field::Var("limit_req_status".into()),
            _ => return Field::parse_prefixed(name),
        };
        Ok(field)
    }

    fn parse_prefixed(name: &str) -> Result<Field, FieldError> {
        if let Some(var) = name.strip_prefix("var:") {
            let valid = !var.is_empty()
                && var
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
            return if valid {
                Ok(Field::Var(var.into()))
            } else {
                Err(FieldError::BadVar(name.to_owned()))
            };
        }
        let header = |header: &str, dashes: bool| -> Result<Box<str>, FieldError> {
            let header = if dashes {
                header.replace('_', "-")
            } else {
                header.to_owned()
            };
            if crate::redact::is_token(&header) {
                Ok(header.to_ascii_lowercase().into_boxed_str())
            } else {
                Err(FieldError::BadHeader(name.to_owned(), header))
            }
        };
        if let Some(h) = name.strip_prefix("request_header:") {
            return Ok(Field::RequestHeader(header(h, false)?));
        }
        if let Some(h) = name.strip_prefix("response_header:") {
            return Ok(Field::ResponseHeader(header(h, false)?));
        }
        if let Some(h) = name.strip_prefix("sent_http_") {
            return Ok(Field::ResponseHeader(header(h, true)?));
        }
        if let Some(h) = name.strip_prefix("http_") {
            return Ok(Field::RequestHeader(header(h, true)?));
        }
        Err(FieldError::Unknown(name.to_owned()))
    }

    /// Whether the field takes few distinct values, so it may be a Loki
    /// label: one stream per value, and streams are what Loki indexes.
    pub fn is_bounded(&self) -> bool {
        match self {
            Field::Method
            | Field::Scheme
            | Field::Protocol
            | Field::Host
            | Field::HttpHost
            | Field::Status
            | Field::StatusClass
            | Field::UpstreamAddr
            | Field::UpstreamCacheStatus
            | Field::Route => true,
            Field::Var(name) => &**name == "limit_req_status",
            _ => false,
        }
    }

    /// The value of this field for `rec`, redaction applied.
    pub fn render<'a>(&self, rec: &'a LogRecord, redaction: &Redaction) -> Value<'a> {
        let text = |s: &'a str| Value::Text(Cow::Borrowed(s));
        match self {
            Field::TimeIso8601 => owned(|out| time_format::iso8601(rec.time_unix_ms, out)),
            Field::TimeLocal => owned(|out| time_format::local(rec.time_unix_ms, out)),
            Field::Timestamp => owned(|out| time_format::rfc3339_millis(rec.time_unix_ms, out)),
            Field::Msec => Value::Millis(rec.time_unix_ms),
            Field::RemoteAddr => Value::Text(Cow::Owned(redaction.ip(rec.peer_ip))),
            Field::RemotePort => Value::Int(u64::from(rec.peer_port)),
            Field::ClientIp => Value::Text(Cow::Owned(redaction.ip(rec.client_ip))),
            Field::Method => text(rec.method.as_str()),
            Field::Scheme => text(rec.scheme.as_str()),
            Field::Protocol => text(rec.protocol.as_str()),
            Field::RequestLine => owned(|out| {
                let uri = redaction.uri(&rec.uri);
                let (method, protocol) = (rec.method.as_str(), rec.protocol.as_str());
                out.reserve(method.len() + uri.len() + protocol.len() + 2);
                out.push_str(method);
                out.push(' ');
                out.push_str(&uri);
                out.push(' ');
                out.push_str(protocol);
            }),
            Field::RequestUri => Value::Text(redaction.uri(&rec.uri)),
            Field::Path => text(rec.uri.split_once('?').map_or(rec.uri.as_str(), |(p, _)| p)),
            Field::Args => match rec.uri.split_once('?') {
                Some((_, query)) => Value::Text(redaction.query(query)),
                None => text(""),
            },
            Field::Host => text(&rec.host),
            Field::HttpHost => header_text(&rec.http_host, "host", redaction),
            Field::Status => Value::Int(u64::from(rec.status)),
            Field::StatusClass => owned(|out| {
                out.push(char::from(b'0' + (rec.status / 100 % 10) as u8));
                out.push_str("xx");
            }),
            Field::BodyBytesSent => Value::Int(rec.bytes_sent),
            Field::RequestLength => Value::Int(rec.bytes_received),
            Field::RequestTime => Value::Seconds(rec.request_time),
            Field::UpstreamResponseTime => rec
                .upstream_response_time
                .map_or(Value::Null, Value::Seconds),
            Field::UpstreamAddr => rec.upstream_addr.as_deref().map_or(Value::Null, text),
            Field::UpstreamCacheStatus => text(rec.cache_status.map_or("", CacheStatus::as_str)),
            Field::RequestId => text(&rec.request_id),
            Field::Route => text(&rec.route),
            Field::Var(name) => text(rec.var(name).unwrap_or("")),
            Field::RequestHeader(name) => match &**name {
                // The host lifts these two out of the headers.
                "user-agent" => header_text(&rec.user_agent, "user-agent", redaction),
                "referer" => match header_text(&rec.referer, "referer", redaction) {
                    Value::Text(referer) => Value::Text(redact_referer(referer, redaction)),
                    other => other,
                },
                _ => Value::Text(request_header(rec, name, redaction).unwrap_or(Cow::Borrowed(""))),
            },
            Field::ResponseHeader(name) => Value::Text(
                joined(&rec.response_headers, name, redaction).unwrap_or(Cow::Borrowed("")),
            ),
        }
    }
}

impl Field {
    /// The [`LogRecord`] fields [`Field::render`] reads (headers aside:
    /// [`Field::request_header`], [`Field::response_header`]); the times
    /// but `timestamp`, the status and the numbers need none.
    pub fn log_fields(&self) -> LogFieldSet {
        match self {
            Field::RequestLine | Field::RequestUri | Field::Path | Field::Args => LogFieldSet::URI,
            Field::Host => LogFieldSet::HOST,
            Field::HttpHost => LogFieldSet::HTTP_HOST,
            Field::UpstreamAddr => LogFieldSet::UPSTREAM_ADDR,
            Field::RequestId => LogFieldSet::REQUEST_ID,
            Field::Route => LogFieldSet::ROUTE,
            Field::Var(_) => LogFieldSet::VARS,
            Field::RequestHeader(name) => match &**name {
                "user-agent" => LogFieldSet::USER_AGENT,
                "referer" => LogFieldSet::REFERER,
                _ => LogFieldSet::empty(),
            },
            // Numbers, enums and addresses always come.
            Field::Timestamp
            | Field::RemoteAddr
            | Field::RemotePort
            | Field::ClientIp
            | Field::Method
            | Field::Scheme
            | Field::Protocol
            | Field::UpstreamCacheStatus
            | Field::TimeIso8601
            | Field::TimeLocal
            | Field::Msec
            | Field::Status
            | Field::StatusClass
            | Field::BodyBytesSent
            | Field::RequestLength
            | Field::RequestTime
            | Field::UpstreamResponseTime
            | Field::ResponseHeader(_) => LogFieldSet::empty(),
        }
    }

    /// The request header field this reads from `request-headers`, if any
    /// (`user-agent` and `referer` come in fields of their own).
    pub fn request_header(&self) -> Option<&str> {
        match self {
            Field::RequestHeader(name) => match &**name {
                "user-agent" | "referer" => None,
                name => Some(name),
            },
            _ => None,
        }
    }

    /// The response header field this reads, if any.
    pub fn response_header(&self) -> Option<&str> {
        match self {
            Field::ResponseHeader(name) => Some(name),
            _ => None,
        }
    }
}

fn owned<'a>(write: impl FnOnce(&mut String)) -> Value<'a> {
    // Room for a timestamp or a short request line without growing (each
    // growth is a guest allocation and a copy).
    let mut out = String::with_capacity(48);
    write(&mut out);
    Value::Text(Cow::Owned(out))
}

fn header_text<'a>(value: &'a str, name: &str, redaction: &Redaction) -> Value<'a> {
    Value::Text(Cow::Borrowed(header_value(value, name, redaction)))
}

/// A header lifted out of the list (`user-agent`, `host`...): `REDACTED`
/// when listed in `redact.headers` and present.
#[inline(always)]
pub fn header_value<'a>(value: &'a str, name: &str, redaction: &Redaction) -> &'a str {
    if redaction.hides_header(name) && !value.is_empty() {
        REDACTED
    } else {
        value
    }
}

/// A referer is a URI too: the listed query parameters are hidden in it.
fn redact_referer<'a>(referer: Cow<'a, str>, redaction: &Redaction) -> Cow<'a, str> {
    match referer {
        Cow::Borrowed(text) => redaction.uri(text),
        Cow::Owned(text) => Cow::Owned(redaction.uri(&text).into_owned()),
    }
}

fn request_header<'a>(
    rec: &'a LogRecord,
    name: &str,
    redaction: &Redaction,
) -> Option<Cow<'a, str>> {
    joined(&rec.request_headers, name, redaction)
}

/// Every value of header `name`, joined like nginx (`; ` for cookies, `, `
/// otherwise); `None` when absent; `REDACTED` when listed in `redact.headers`.
fn joined<'a>(headers: &'a [Header], name: &str, redaction: &Redaction) -> Option<Cow<'a, str>> {
    let mut values = headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name));
    let first = values.next()?;
    if redaction.hides_header(name) {
        return Some(Cow::Borrowed(REDACTED));
    }
    let mut text = String::from_utf8_lossy(&first.value);
    let separator = if name == "cookie" { "; " } else { ", " };
    for more in values {
        let joined = text.to_mut();
        joined.push_str(separator);
        joined.push_str(&String::from_utf8_lossy(&more.value));
    }
    Some(text)
}

#[cfg(test)]
pub(crate) mod tests;
