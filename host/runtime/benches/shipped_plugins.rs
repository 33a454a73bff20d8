//! Per-request cost of the plugins Tailgate ships for its main jobs, on a
//! reused instance (the runtime's default): `rate-limit`'s `on-request`
//! (one and three limits, each a `rate-limit-check` host call) and
//! `log-shape`'s `on-log` (the nginx preset as JSON, with redaction and
//! labels; and a line dropped by sampling), and `ban`'s check on every
//! request: `on-request` of a client that is not banned (its key, one
//! `ban-check` host call) and the `on-log` observer on an exchange that is
//! not a failure (`make bench`'s scenario 5 measures the same end to end).
//!
//! Run: `make plugins`, then `cargo bench -p tailgate-runtime --bench
//! shipped_plugins` (or `make bench`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tailgate_runtime::{
    ConfiguredPlugin, Header, IpAddress, Limits, LogRecord, Method, Protocol, RequestAction,
    RequestHead, Runtime, RuntimeConfig, Scheme, Var,
};

fn wasm(stem: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
        "../../plugins/target/wasm32-wasip2/release/{stem}.wasm"
    ));
    assert!(
        path.is_file(),
        "{} is missing: run `make plugins` first",
        path.display()
    );
    path
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.to_string(),
        value: value.as_bytes().to_vec(),
    }
}

/// A browser-like request with 8 headers.
fn headers() -> Vec<Header> {
    vec![
        header("host", "example.com"),
        header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        ),
        header("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
        header("accept-language", "en-US,en;q=0.5"),
        header("accept-encoding", "gzip, deflate, br"),
        header("referer", "https://example.com/"),
        header("cookie", "session=0123456789abcdef; theme=dark"),
        header("x-api-key", "k-0123456789"),
    ]
}

fn request() -> RequestHead {
    RequestHead {
        method: Method::Post,
        scheme: Scheme::Https,
        host: Some("example.com".into()),
        path: Some("/user/login".into()),
        query: Some("next=%2Fhome".into()),
        headers: Some(headers()),
        client_ip: IpAddress::V4(0xCB00_7107),
        route: Some("bench".into()),
        request_id: Some("01J0000000000000000000000".into()),
    }
}

fn record(status: u16) -> LogRecord {
    LogRecord {
        time_unix_ms: 1_735_787_045_678,
        client_ip: IpAddress::V4(0xCB00_7107),
        peer_ip: IpAddress::V4(0x0A00_0002),
        peer_port: 5555,
        method: Method::Get,
        scheme: Scheme::Https,
        protocol: Protocol::Http11,
        host: Some("example.com".into()),
        uri: Some("/articles/2024/some-page?ref=home&token=abc".into()),
        status,
        bytes_sent: 12_345,
        bytes_received: 0,
        request_time: 0.012_345,
        upstream_response_time: Some(0.010_01),
        upstream_addr: Some("100.64.0.1:443".into()),
        cache_status: None,
        route: Some("bench".into()),
        request_id: Some("01J0000000000000000000000".into()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0".into()),
        referer: Some("https://example.com/".into()),
        http_host: Some("example.com".into()),
        path: None,
        request_headers: Some(headers()),
        response_headers: Some(vec![header("content-type", "text/html")]),
        vars: Some(vec![Var {
            name: "limit_req_status".into(),
            value: "PASSED".into(),
        }]),
    }
}

/// `stem`'s component, loaded as `name` and configured with `config`.
fn configured(runtime: &Runtime, name: &str, stem: &str, config: &str) -> Arc<ConfiguredPlugin> {
    let plugin = runtime.load(name, &wasm(stem)).expect("load plugin");
    // A generous budget: a machine busy with other work must not turn a
    // descheduled call into a timeout fault mid-benchmark.
    let limits = Limits {
        hook_timeout: Duration::from_secs(1),
        memory_bytes: 16 << 20,
    };
    Arc::new(
        runtime
            .configure(&plugin, "bench", config, limits)
            .expect("configure"),
    )
}

fn shipped_plugins(c: &mut Criterion) {
    let cache = tempfile::tempdir().expect("cache dir");
    let runtime = Runtime::new(RuntimeConfig::new(cache.path())).expect("runtime");

    // Rates far above the call rate, on the real clock: every iteration
    // passes, so the cost measured is the check, not a rejection.
    let one_limit = configured(
        &runtime,
        "rate-limit",
        "rate_limit",
        r#"{"limits":[{"zone":"per_ip","rate":"1000000r/s","burst":1000000,"nodelay":true}]}"#,
    );
    let three_limits = configured(
        &runtime,
        "rate-limit",
        "rate_limit",
        r#"{"limits":[
            {"zone":"per_ip3","rate":"1000000r/s","burst":1000000,"nodelay":true},
            {"zone":"login","rate":"1000000r/s","burst":1000000,"nodelay":true,"path":"^/user/login$","methods":["POST"]},
            {"zone":"api_key","rate":"1000000r/s","burst":1000000,"nodelay":true,"key":"{http_x_api_key}"}
        ]}"#,
    );
    let mut req = request();
    let mut group = c.benchmark_group("rate_limit_on_request");
    for (name, plugin) in [("1-limit", &one_limit), ("3-limits", &three_limits)] {
        group.bench_function(name, |b| {
            b.iter(|| match plugin.on_request(&mut req) {
                Ok(RequestAction::Continue(edits)) => {
                    std::hint::black_box(edits);
                }
                other => panic!("unexpected: {other:?}"),
            })
        });
    }
    group.finish();

    let shaped = configured(
        &runtime,
        "log-shape",
        "log_shape",
        r#"{"preset":"nginx","fields":["request_id","limit_req_status"],
            "redact":{"query_params":["token"],"headers":["cookie"],"ip_truncate":true},
            "labels":{"job":"tailgate","host":"{host}","status_class":"{status_class}"}}"#,
    );
    let sampled = configured(
        &runtime,
        "log-shape",
        "log_shape",
        r#"{"sample":{"rate":1000000,"when":{"status":"200-399"}}}"#,
    );
    let mut ok = record(200);
    let mut group = c.benchmark_group("log_shape_on_log");
    group.bench_function("nginx-json-redacted-labels", |b| {
        b.iter(|| {
            let line = shaped
                .on_log(&mut ok)
                .expect("no fault")
                .into_line()
                .expect("kept");
            std::hint::black_box(line);
        })
    });
    group.bench_function("sampled-out", |b| {
        // The first line of the class is kept; the rest are sampled out.
        let _ = sampled.on_log(&mut ok);
        b.iter(|| {
            let line = sampled.on_log(&mut ok).expect("no fault");
            std::hint::black_box(line);
        })
    });
    group.finish();

    // The stack's login jail (fly/config.toml, docs/ban.md); nobody is
    // banned, so every iteration is the check alone.
    let ban = configured(
        &runtime,
        "ban",
        "ban",
        r#"{"jails":[{"name":"login","statuses":[401,403],"path":"^/user/login",
            "max_retry":5,"find_time":"10m","ban_time":"1h"}]}"#,
    );
    let mut group = c.benchmark_group("ban");
    let mut page = request();
    page.path = Some("/articles/2024/some-page".into());
    for (name, req) in [
        ("on_request-not-banned", &mut page),
        ("on_request-not-banned-watched", &mut req),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| match ban.on_request(req) {
                Ok(RequestAction::Continue(edits)) => {
                    std::hint::black_box(edits);
                }
                other => panic!("unexpected: {other:?}"),
            })
        });
    }
    // A watched request that succeeded: on-request's key var, status 200.
    let mut served = record(200);
    served.vars = Some(vec![Var {
        name: "ban_key.login".into(),
        value: "203.0.113.7".into(),
    }]);
    group.bench_function("on_log-not-a-failure", |b| {
        b.iter(|| {
            let verdict = ban.on_log(&mut served).expect("no fault");
            std::hint::black_box(verdict);
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).sample_size(30);
    targets = shipped_plugins
}
criterion_main!(benches);
