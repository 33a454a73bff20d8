//! `on-log` in batches, on the real fault-injector plugin: one verdict per
//! record in order, longer batches split into calls of at most
//! `MAX_LOG_BATCH`, and a record that faults losing only its own verdict
//! (the others of its call are made again one at a time); and on the real
//! log-shape plugin, whose SDK reads the batch's records in place: a batch
//! of varied records shapes each line as a call of its own would.

mod common;

use std::sync::Arc;

use common::*;
use tailgate_runtime::{
    block_on, CacheStatus, Header, IpAddress, LogRecord, LogVerdict, Method, PluginFault, Protocol,
    Scheme, Var, MAX_LOG_BATCH,
};

fn record(uri: &str) -> LogRecord {
    LogRecord {
        uri: Some(uri.into()),
        status: 200,
        request_id: Some("req".into()),
        ..LogRecord::default()
    }
}

fn line(verdict: &Result<LogVerdict, PluginFault>) -> String {
    match verdict {
        Ok(LogVerdict::Shape(line)) => line.line.clone(),
        other => panic!("a shaped line, got {other:?}"),
    }
}

#[test]
fn every_record_of_a_long_batch_gets_its_own_verdict_in_order() {
    let runtime = runtime();
    let plugin = configured(&runtime, "r", r#"{"mode":"ok"}"#);
    let count = MAX_LOG_BATCH * 2 + 3;
    let mut records: Vec<LogRecord> = (0..count).map(|n| record(&format!("/{n}"))).collect();
    let verdicts = block_on(plugin.log_batch_hook(&mut records));
    assert_eq!(verdicts.len(), count);
    for (n, verdict) in verdicts.iter().enumerate() {
        assert!(
            line(verdict).starts_with(&format!("GET /{n} 200 req")),
            "record {n}: {verdict:?}"
        );
    }
    assert_eq!(
        records[5].uri.as_deref(),
        Some("/5"),
        "records are whole again"
    );
}

#[test]
fn a_record_that_traps_loses_only_its_own_line() {
    let runtime = runtime();
    let plugin = configured(
        &runtime,
        "r",
        r#"{"mode":"trap","hook":"log","hooks":["log"],"only_path":"/bad"}"#,
    );
    let mut records = vec![record("/a"), record("/bad"), record("/c")];
    let verdicts = block_on(plugin.log_batch_hook(&mut records));
    assert_eq!(verdicts.len(), 3);
    assert!(line(&verdicts[0]).starts_with("GET /a 200"));
    assert!(
        matches!(&verdicts[1], Err(PluginFault::Trap(message)) if message.contains("trap in log")),
        "{:?}",
        verdicts[1]
    );
    assert!(line(&verdicts[2]).starts_with("GET /c 200"));
}

/// Records that differ in every way a field can: present or absent, v4 or
/// v6, an `other` method, cache status or none, headers and vars or none.
fn varied_records() -> Vec<LogRecord> {
    let header = |name: &str, value: &str| Header {
        name: name.into(),
        value: value.as_bytes().to_vec(),
    };
    let full = LogRecord {
        time_unix_ms: 1_735_787_045_678,
        client_ip: IpAddress::V6((0x2001_0db8_0000_0000, 0x0000_0000_0000_0042)),
        peer_ip: IpAddress::V4(0x7F00_0001),
        peer_port: 40_000,
        method: Method::Other("PURGE".into()),
        scheme: Scheme::Https,
        protocol: Protocol::Http2,
        status: 503,
        bytes_sent: 1234,
        bytes_received: 56,
        request_time: 0.0125,
        upstream_response_time: Some(0.011),
        cache_status: Some(CacheStatus::Stale),
        host: Some("api.example".into()),
        uri: Some("/full?q=\"x\"".into()),
        upstream_addr: Some("10.0.0.2:8080".into()),
        route: Some("api".into()),
        request_id: Some("rid-full".into()),
        user_agent: Some("curl/8 \u{e9}".into()),
        referer: Some("https://ref.example/".into()),
        http_host: Some("api.example:443".into()),
        path: None,
        request_headers: Some(vec![header("x-trace", "t-1")]),
        response_headers: Some(vec![header("content-type", "text/html")]),
        vars: Some(vec![Var {
            name: "limit_req_status".into(),
            value: "REJECTED".into(),
        }]),
    };
    let bare = LogRecord {
        uri: Some("/bare".into()),
        status: 200,
        ..LogRecord::default()
    };
    let v4 = LogRecord {
        client_ip: IpAddress::V4(0xC633_6407),
        method: Method::Post,
        uri: Some("/v4".into()),
        status: 201,
        user_agent: Some("ua-2".into()),
        cache_status: Some(CacheStatus::Hit),
        ..LogRecord::default()
    };
    vec![full.clone(), bare.clone(), v4, bare, full]
}

#[test]
fn log_shape_shapes_each_record_of_a_batch_as_a_call_of_its_own() {
    let runtime = runtime();
    let wasm = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/target/wasm32-wasip2/release/log_shape.wasm");
    let loaded = runtime.load("log-shape", &wasm).expect("load log-shape");
    let fields = [
        "time",
        "remote_addr",
        "remote_port",
        "client_ip",
        "request_method",
        "scheme",
        "server_protocol",
        "request_uri",
        "host",
        "http_host",
        "status",
        "body_bytes_sent",
        "request_length",
        "request_time",
        "upstream_response_time",
        "upstream_addr",
        "upstream_cache_status",
        "request_id",
        "route",
        "limit_req_status",
        "http_user_agent",
        "http_referer",
        "http_x_trace",
        "sent_http_content_type",
    ];
    let config = format!(
        r#"{{"fields":{}}}"#,
        serde_json::to_string(&fields).expect("json")
    );
    let plugin = Arc::new(
        runtime
            .configure(&loaded, "api", &config, limits())
            .expect("configure"),
    );
    let mut batch = varied_records();
    let batched = block_on(plugin.log_batch_hook(&mut batch));
    let alone: Vec<_> = varied_records()
        .iter_mut()
        .map(|rec| plugin.on_log(rec))
        .collect();
    assert_eq!(batched.len(), alone.len());
    for (n, (batched, alone)) in batched.iter().zip(&alone).enumerate() {
        assert_eq!(line(batched), line(alone), "record {n}");
    }
    let first = line(&batched[0]);
    for expected in [
        "PURGE",
        "2001:db8::42",
        "STALE",
        "REJECTED",
        "t-1",
        "text/html",
    ] {
        assert!(first.contains(expected), "{expected} in {first}");
    }
    assert!(!line(&batched[1]).contains("t-1"), "{}", line(&batched[1]));
}
