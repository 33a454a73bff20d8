//! The field catalog against a record as the host hands it over: every
//! name's value, redaction, the label guard and what each field reads.

use std::net::IpAddr;
use tailgate_plugin_sdk::testing::{assert_reads_exactly, narrowed_log_record};

use tailgate_plugin_sdk::{HeaderFilter, Method, Protocol, Scheme, Var};

use super::*;
use crate::config::RawRedact;

/// A record as the host would hand it over.
pub(crate) fn record() -> LogRecord {
    LogRecord {
        time_unix_ms: 1_735_787_045_678,
        client_ip: IpAddr::from([198, 51, 100, 4]),
        peer_ip: IpAddr::from([10, 0, 0, 2]),
        peer_port: 5555,
        method: Method::Get,
        scheme: Scheme::Https,
        host: "docs.example.com".into(),
        uri: "/search?q=tail&token=s3cret".into(),
        protocol: Protocol::Http11,
        status: 200,
        bytes_sent: 1234,
        bytes_received: 17,
        request_time: 0.012_345,
        upstream_response_time: Some(0.010_01),
        upstream_addr: Some("100.64.0.1:443".to_owned()).into(),
        cache_status: None,
        route: "docs".into(),
        request_id: "01HZX".into(),
        user_agent: "curl/8 \"quoted\"".into(),
        referer: "https://example.com/?token=abc".into(),
        http_host: "docs.example.com:8443".into(),
        request_headers: vec![
            Header::new("host", "docs.example.com:8443"),
            Header::new("user-agent", "curl/8 \"quoted\""),
            Header::new("authorization", "Bearer xyz"),
            Header::new("x-forwarded-for", "10.0.0.1"),
            Header::new("X-Forwarded-For", "10.0.0.2"),
            Header::new("cookie", "a=1"),
            Header::new("cookie", "b=2"),
        ],
        response_headers: vec![Header::new("content-type", "text/html")],
        vars: vec![Var::new("limit_req_status", "PASSED")].into(),
        path: "/search".into(),
    }
}

fn render(name: &str, rec: &LogRecord, redaction: &Redaction) -> Value<'static> {
    let field = Field::parse(name).unwrap_or_else(|err| panic!("{err}"));
    match field.render(rec, redaction) {
        Value::Text(text) => Value::Text(Cow::Owned(text.into_owned())),
        Value::Int(n) => Value::Int(n),
        Value::Seconds(s) => Value::Seconds(s),
        Value::Millis(ms) => Value::Millis(ms),
        Value::Null => Value::Null,
    }
}

fn text(value: &str) -> Value<'static> {
    Value::Text(Cow::Owned(value.to_owned()))
}

#[test]
fn nginx_variables_render_from_the_record() {
    let rec = record();
    let none = Redaction::default();
    let cases = [
        ("time", text("2025-01-02T03:04:05+00:00")),
        ("time_local", text("02/Jan/2025:03:04:05 +0000")),
        ("timestamp", text("2025-01-02T03:04:05.678Z")),
        ("msec", Value::Millis(1_735_787_045_678)),
        ("remote_addr", text("10.0.0.2")),
        ("remote_port", Value::Int(5555)),
        ("client_ip", text("198.51.100.4")),
        ("request_method", text("GET")),
        ("scheme", text("https")),
        ("server_protocol", text("HTTP/1.1")),
        ("request", text("GET /search?q=tail&token=s3cret HTTP/1.1")),
        ("request_uri", text("/search?q=tail&token=s3cret")),
        ("path", text("/search")),
        ("args", text("q=tail&token=s3cret")),
        ("host", text("docs.example.com")),
        ("http_host", text("docs.example.com:8443")),
        ("status", Value::Int(200)),
        ("status_class", text("2xx")),
        ("body_bytes_sent", Value::Int(1234)),
        ("request_length", Value::Int(17)),
        ("request_time", Value::Seconds(0.012_345)),
        ("upstream_response_time", Value::Seconds(0.010_01)),
        ("upstream_addr", text("100.64.0.1:443")),
        ("upstream_cache_status", text("")),
        ("http_user_agent", text("curl/8 \"quoted\"")),
        ("http_referer", text("https://example.com/?token=abc")),
        ("request_id", text("01HZX")),
        ("route", text("docs")),
        ("limit_req_status", text("PASSED")),
        ("var:missing", text("")),
        ("http_x_forwarded_for", text("10.0.0.1, 10.0.0.2")),
        ("request_header:X-Forwarded-For", text("10.0.0.1, 10.0.0.2")),
        ("http_cookie", text("a=1; b=2")),
        ("http_x_absent", text("")),
        ("sent_http_content_type", text("text/html")),
        ("response_header:content-type", text("text/html")),
    ];
    for (name, expected) in cases {
        assert_eq!(render(name, &rec, &none), expected, "{name}");
    }
}

#[test]
fn absent_upstream_is_null() {
    let mut rec = record();
    rec.upstream_response_time = None;
    rec.upstream_addr = None.into();
    rec.request_headers.clear();
    rec.uri = "/plain".into();
    rec.peer_ip = "2001:db8::1".parse().expect("an address");
    rec.peer_port = 443;
    let none = Redaction::default();
    assert_eq!(render("upstream_response_time", &rec, &none), Value::Null);
    assert_eq!(render("upstream_addr", &rec, &none), Value::Null);
    // No Host header: `http_host` is what the host filled in.
    assert_eq!(
        render("http_host", &rec, &none),
        text("docs.example.com:8443")
    );
    assert_eq!(render("args", &rec, &none), text(""));
    assert_eq!(render("path", &rec, &none), text("/plain"));
    assert_eq!(render("remote_addr", &rec, &none), text("2001:db8::1"));
    assert_eq!(render("remote_port", &rec, &none), Value::Int(443));
    rec.status = 503;
    assert_eq!(render("status_class", &rec, &none), text("5xx"));
}

#[test]
fn redaction_applies_wherever_the_value_shows() {
    let rec = record();
    let redaction = Redaction::build(&RawRedact {
        query_params: vec!["token".into()],
        headers: vec!["authorization".into(), "user-agent".into(), "cookie".into()],
        ip_truncate: true,
        ..RawRedact::default()
    })
    .expect("valid");
    let cases = [
        ("request_uri", text("/search?q=tail&token=REDACTED")),
        (
            "request",
            text("GET /search?q=tail&token=REDACTED HTTP/1.1"),
        ),
        ("args", text("q=tail&token=REDACTED")),
        ("http_referer", text("https://example.com/?token=REDACTED")),
        ("http_authorization", text("REDACTED")),
        ("http_cookie", text("REDACTED")),
        ("http_user_agent", text("REDACTED")),
        ("http_x_absent", text("")),
        ("client_ip", text("198.51.100.0")),
        ("remote_addr", text("10.0.0.0")),
        ("http_x_forwarded_for", text("10.0.0.1, 10.0.0.2")),
    ];
    for (name, expected) in cases {
        assert_eq!(render(name, &rec, &redaction), expected, "{name}");
    }
}

#[test]
fn only_bounded_fields_may_be_labels() {
    for name in [
        "status",
        "status_class",
        "route",
        "http_host",
        "request_method",
        "limit_req_status",
    ] {
        assert!(Field::parse(name).expect("known").is_bounded(), "{name}");
    }
    for name in [
        "client_ip",
        "remote_addr",
        "request_uri",
        "request_id",
        "http_user_agent",
        "http_referer",
        "time",
        "request_time",
        "var:other",
        "http_x_api_key",
        "path",
    ] {
        assert!(!Field::parse(name).expect("known").is_bounded(), "{name}");
    }
}

#[test]
fn unknown_and_malformed_fields_are_refused() {
    assert_eq!(
        Field::parse("stauts"),
        Err(FieldError::Unknown("stauts".into()))
    );
    assert!(Field::parse("stauts")
        .expect_err("refused")
        .to_string()
        .starts_with("unknown field `stauts`; known: time, "));
    assert_eq!(
        Field::parse("request_header:a b"),
        Err(FieldError::BadHeader(
            "request_header:a b".into(),
            "a b".into()
        ))
    );
    assert_eq!(
        Field::parse("http_"),
        Err(FieldError::BadHeader("http_".into(), String::new()))
    );
    assert_eq!(Field::parse("var:"), Err(FieldError::BadVar("var:".into())));
}

/// Every catalog name with the record fields it reads.
pub(crate) const CATALOG: [(&str, LogFieldSet); 40] = [
    ("time", LogFieldSet::empty()),
    ("time_local", LogFieldSet::empty()),
    ("timestamp", LogFieldSet::empty()),
    ("msec", LogFieldSet::empty()),
    // Addresses and enums always come.
    ("remote_addr", LogFieldSet::empty()),
    ("remote_port", LogFieldSet::empty()),
    ("client_ip", LogFieldSet::empty()),
    ("request_method", LogFieldSet::empty()),
    ("scheme", LogFieldSet::empty()),
    ("server_protocol", LogFieldSet::empty()),
    ("request", LogFieldSet::URI),
    ("request_uri", LogFieldSet::URI),
    ("path", LogFieldSet::URI),
    ("args", LogFieldSet::URI),
    ("host", LogFieldSet::HOST),
    ("http_host", LogFieldSet::HTTP_HOST),
    ("request_header:host", LogFieldSet::empty()),
    ("status", LogFieldSet::empty()),
    ("status_class", LogFieldSet::empty()),
    ("body_bytes_sent", LogFieldSet::empty()),
    ("request_length", LogFieldSet::empty()),
    ("request_time", LogFieldSet::empty()),
    ("upstream_response_time", LogFieldSet::empty()),
    ("upstream_addr", LogFieldSet::UPSTREAM_ADDR),
    ("upstream_cache_status", LogFieldSet::empty()),
    ("http_user_agent", LogFieldSet::USER_AGENT),
    ("request_header:User-Agent", LogFieldSet::USER_AGENT),
    ("http_referer", LogFieldSet::REFERER),
    ("request_id", LogFieldSet::REQUEST_ID),
    ("route", LogFieldSet::ROUTE),
    ("limit_req_status", LogFieldSet::VARS),
    ("var:limit_req_status", LogFieldSet::VARS),
    ("http_x_forwarded_for", LogFieldSet::empty()),
    ("request_header:authorization", LogFieldSet::empty()),
    ("http_cookie", LogFieldSet::empty()),
    ("sent_http_content_type", LogFieldSet::empty()),
    ("response_header:content-type", LogFieldSet::empty()),
    ("http_x_absent", LogFieldSet::empty()),
    ("var:missing", LogFieldSet::VARS),
    ("sent_http_x_absent", LogFieldSet::empty()),
];

/// `rec` as the host hands it to a plugin whose only field is `field`,
/// `fields` standing for what it declared.
fn narrowed(rec: &LogRecord, field: &Field, fields: LogFieldSet) -> LogRecord {
    narrowed_log_record(
        rec,
        fields,
        &HeaderFilter::only(field.request_header()),
        &HeaderFilter::only(field.response_header()),
    )
}

#[test]
fn each_field_declares_the_record_fields_it_reads() {
    for (name, expected) in CATALOG {
        let field = Field::parse(name).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(field.log_fields(), expected, "{name}");
    }
}

#[test]
fn each_field_renders_the_same_from_only_what_it_declares() {
    let mut rec = record();
    rec.cache_status = Some(CacheStatus::Hit);
    // No Host header (HTTP/2): the host fills `http-host` in.
    let mut no_host = rec.clone();
    no_host.request_headers.retain(|h| h.name != "host");
    no_host.http_host = "docs.example.com".into();
    let redactions = [
        Redaction::default(),
        Redaction::build(&RawRedact {
            query_params: vec!["token".into()],
            headers: vec!["authorization".into(), "referer".into()],
            ip_truncate: true,
            ..RawRedact::default()
        })
        .expect("valid"),
    ];
    for (name, _) in CATALOG {
        let field = Field::parse(name).unwrap_or_else(|err| panic!("{err}"));
        let declared = field.log_fields();
        // The same from what it declares; each declared field read (left
        // out, the value changes or the read panics).
        for redaction in &redactions {
            assert_reads_exactly(
                declared,
                LogFieldSet::all(),
                |fields| {
                    [&rec, &no_host].map(|full| {
                        let rec = narrowed(full, &field, fields);
                        format!("{:?}", field.render(&rec, redaction))
                    })
                },
                name,
            );
        }
    }
}
