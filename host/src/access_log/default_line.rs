//! The default access-log line: the JSON object (nginx's variable names)
//! the log phase writes for a request when no plugin shapes the line, built
//! field by field from the finished exchange's `LogRecord`.

use std::fmt::Write as _;

use tailgate_runtime::LogRecord;

use std::time::{Duration, UNIX_EPOCH};

use crate::address_text::{ip_text, push_decimal};

/// The default access-log line: JSON with nginx's variable names, written
/// field by field (a `serde_json` struct cost ~7k instructions a line, the
/// largest single item of a plugin-free request; docs/performance-passes.md).
pub fn default_line(rec: &LogRecord) -> String {
    let mut line = JsonLine::with_capacity(384 + rec.uri().len() + rec.user_agent().len());
    let time = UNIX_EPOCH + Duration::from_millis(rec.time_unix_ms);
    line.text(
        key!("time"),
        &humantime::format_rfc3339_millis(time).to_string(),
    );
    line.text(key!("remote_addr"), &ip_text(rec.peer_ip.into()));
    line.text(key!("client_ip"), &ip_text(rec.client_ip.into()));
    line.text(key!("request_method"), rec.method.as_str());
    line.text(key!("request_uri"), rec.uri());
    line.text(key!("server_protocol"), rec.protocol.as_str());
    line.text(key!("scheme"), rec.scheme.as_str());
    line.number(key!("status"), rec.status);
    line.number(key!("body_bytes_sent"), rec.bytes_sent);
    line.number(key!("request_length"), rec.bytes_received);
    line.seconds(key!("request_time"), Some(rec.request_time));
    line.seconds(key!("upstream_response_time"), rec.upstream_response_time);
    match &rec.upstream_addr {
        Some(addr) => line.text(key!("upstream_addr"), addr),
        None => line.null(key!("upstream_addr")),
    }
    line.text(key!("http_host"), rec.host());
    line.text(key!("http_user_agent"), rec.user_agent());
    line.text(key!("http_referer"), rec.referer());
    line.text(key!("request_id"), rec.request_id());
    line.text(key!("route"), rec.route());
    // nginx `$upstream_cache_status`; only on routes with a cache.
    if let Some(status) = rec.cache_status {
        line.text(key!("upstream_cache_status"), status.as_str());
    }
    line.finish()
}

/// A JSON object key with its quotes and colon (`"time":`), written in one
/// piece.
macro_rules! key {
    ($name:literal) => {
        concat!("\"", $name, "\":")
    };
}
use key;

/// A one-line JSON object being written: `"key":value` pairs in order; each
/// key comes from [`key!`].
struct JsonLine(String);

impl JsonLine {
    fn with_capacity(capacity: usize) -> Self {
        let mut out = String::with_capacity(capacity);
        out.push('{');
        JsonLine(out)
    }

    fn key(&mut self, key: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(key);
    }

    fn text(&mut self, key: &str, value: &str) {
        self.key(key);
        push_json_string(&mut self.0, value);
    }

    fn number(&mut self, key: &str, value: impl Into<u64>) {
        self.key(key);
        push_decimal(&mut self.0, value.into());
    }

    /// Seconds rounded to milliseconds (nginx's `$request_time`), as the
    /// shortest decimal (`0.012`, `1.0`: what serde_json writes); `null`
    /// when absent, negative or not finite.
    fn seconds(&mut self, key: &str, value: Option<f64>) {
        let Some(seconds) = value.filter(|v| v.is_finite() && *v >= 0.0) else {
            return self.null(key);
        };
        self.key(key);
        let ms = (seconds * 1000.0).round();
        if ms >= 9_007_199_254_740_992.0 {
            // Past 2^53 ms (285,000 years) a float prints itself.
            let _ = write!(self.0, "{:?}", ms / 1000.0);
            return;
        }
        let ms = ms as u64;
        push_decimal(&mut self.0, ms / 1000);
        self.0.push('.');
        let fraction = ms % 1000;
        let digits = [fraction / 100, fraction / 10 % 10, fraction % 10];
        let keep = digits
            .iter()
            .rposition(|&d| d != 0)
            .map_or(1, |last| last + 1);
        for digit in &digits[..keep] {
            self.0.push(char::from(b'0' + *digit as u8));
        }
    }

    fn null(&mut self, key: &str) {
        self.key(key);
        self.0.push_str("null");
    }

    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// `text` as a JSON string: `"` and `\` escaped, control characters as
/// `\n`, `\r`, `\t`, `\b`, `\f` or `\u00XX`; runs of other bytes (all of
/// UTF-8 above ASCII) copied whole.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    let bytes = text.as_bytes();
    let mut run = 0;
    while let Some(offset) = first_to_escape(&bytes[run..]) {
        let at = run + offset;
        out.push_str(&text[run..at]);
        match bytes[at] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            byte => {
                let _ = write!(out, "\\u{byte:04x}");
            }
        }
        run = at + 1;
    }
    out.push_str(&text[run..]);
    out.push('"');
}

/// The index of the first byte JSON must escape (below 0x20, `"` or `\`),
/// eight bytes a step: a byte-wise scan was ~5 instructions a byte.
fn first_to_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let is_special = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        // Per byte, the high bit is set where the byte is below 0x20, or
        // equal to '"' or '\' (zero after the xor). A borrow can only mark
        // bytes after a true match, so the lowest mark is exact.
        let below_space = word.wrapping_sub(ONES * 0x20) & !word;
        let quote = word ^ (ONES * u64::from(b'"'));
        let quote = quote.wrapping_sub(ONES) & !quote;
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let backslash = backslash.wrapping_sub(ONES) & !backslash;
        let marks = (below_space | quote | backslash) & HIGH;
        if marks != 0 {
            return Some(at + (marks.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| is_special(b))
        .map(|offset| at + offset)
}

/// The IP part of a socket address as `SocketAddr` prints it (`1.2.3.4:80`,
/// `[::1]:80`, `[fe80::1%2]:80`), without formatting the address again;
/// anything else as is.
#[cfg(test)]
mod tests {
    use super::*;
    use tailgate_runtime::{CacheStatus, Method, Protocol, Scheme};

    pub(crate) fn record() -> LogRecord {
        let ip = |text: &str| text.parse::<std::net::IpAddr>().expect("ip").into();
        LogRecord {
            time_unix_ms: 1_735_787_045_678,
            client_ip: ip("198.51.100.4"),
            peer_ip: ip("10.0.0.2"),
            peer_port: 5555,
            method: Method::Get,
            scheme: Scheme::Https,
            host: Some("docs.example.com".into()),
            uri: Some("/a?b=c".into()),
            protocol: Protocol::Http11,
            status: 200,
            bytes_sent: 1234,
            bytes_received: 0,
            request_time: 0.012_345,
            upstream_response_time: Some(0.010_01),
            upstream_addr: Some("100.64.0.1:443".into()),
            cache_status: None,
            route: Some("docs".into()),
            request_id: Some("abc".into()),
            user_agent: Some("curl/8 \"quoted\"".into()),
            referer: Some(String::new()),
            http_host: Some(String::new()),
            path: None,
            request_headers: Some(vec![]),
            response_headers: Some(vec![]),
            vars: Some(vec![]),
        }
    }

    #[test]
    fn default_line_is_nginx_like_json() {
        let line = default_line(&record());
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(v["time"], "2025-01-02T03:04:05.678Z");
        assert_eq!(v["remote_addr"], "10.0.0.2");
        assert_eq!(v["client_ip"], "198.51.100.4");
        assert_eq!(v["request_method"], "GET");
        assert_eq!(v["request_uri"], "/a?b=c");
        assert_eq!(v["status"], 200);
        assert_eq!(v["body_bytes_sent"], 1234);
        assert_eq!(v["request_time"], 0.012);
        assert_eq!(v["upstream_response_time"], 0.01);
        assert_eq!(v["http_host"], "docs.example.com");
        assert_eq!(v["http_user_agent"], "curl/8 \"quoted\"");
        assert_eq!(v["http_referer"], "");
        assert_eq!(v["request_id"], "abc");
        assert_eq!(v["route"], "docs");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn seconds_are_written_as_serde_json_writes_the_rounded_value() {
        let mut cases: Vec<f64> = (0..5000).map(|ms| f64::from(ms) / 997.0).collect();
        cases.extend([0.0, 0.0004, 0.0005, 1.0, 59.9996, 86_400.25, 1e12]);
        for seconds in cases {
            let mut line = JsonLine::with_capacity(16);
            line.seconds(key!("t"), Some(seconds));
            let rounded = (seconds * 1000.0).round() / 1000.0;
            let expected = format!(
                "{{\"t\":{}}}",
                serde_json::to_string(&rounded).expect("json")
            );
            assert_eq!(line.finish(), expected, "{seconds}");
        }
    }

    #[test]
    fn default_line_matches_serde_json_field_for_field() {
        let mut rec = record();
        rec.user_agent = Some("a\"b\\c\nd\u{1}\u{8}\u{c}\u{7f}é\t".into());
        rec.request_time = 1.0;
        rec.upstream_response_time = None;
        rec.upstream_addr = None;
        rec.cache_status = Some(CacheStatus::Hit);
        let line = default_line(&rec);
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(v["http_user_agent"], rec.user_agent());
        assert_eq!(v["request_time"], 1.0);
        assert!(line.contains(r#""request_time":1.0,"#), "{line}");
        assert!(v["upstream_response_time"].is_null());
        assert!(v["upstream_addr"].is_null());
        assert_eq!(v["upstream_cache_status"], "HIT");
        // The same escapes serde_json writes.
        assert!(
            line.contains(&serde_json::to_string(rec.user_agent()).expect("json")),
            "{line}"
        );
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 19);
        rec.cache_status = None;
        rec.request_time = f64::NAN;
        let v: serde_json::Value = serde_json::from_str(&default_line(&rec)).expect("valid JSON");
        assert!(v.get("upstream_cache_status").is_none());
        assert!(v["request_time"].is_null());
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them_at_any_offset() {
        let specials: Vec<char> = (0u8..0x80)
            .map(char::from)
            .chain(['é', '€', '😀'])
            .collect();
        for special in specials {
            for at in 0..20 {
                let mut text: String = "a".repeat(at);
                text.push(special);
                text.push_str("bcdefghij\"\u{1}");
                let mut out = String::new();
                push_json_string(&mut out, &text);
                assert_eq!(
                    out,
                    serde_json::to_string(&text).expect("json"),
                    "{special:?} at {at}"
                );
            }
        }
    }

    #[test]
    fn the_remote_addr_is_the_peer_ip_as_ip_addr_prints_it() {
        for peer in ["10.0.0.2", "::1", "fe80::1", "::ffff:10.1.2.3"] {
            let mut rec = record();
            rec.peer_ip = peer.parse::<std::net::IpAddr>().expect("ip").into();
            let v: serde_json::Value =
                serde_json::from_str(&default_line(&rec)).expect("valid JSON");
            assert_eq!(v["remote_addr"], peer);
        }
    }
}
