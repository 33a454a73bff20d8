//! Runs one shipped plugin's request phase (its fixed edits and its hook,
//! as a route's chain runs them) or log hook N times on a reused instance,
//! as the proxy does per request, for counting instructions per request
//! with callgrind (docs/performance-passes.md, sections 9 and 14 to 17):
//! run it with two counts and divide the difference in instructions by the
//! difference in calls, so loading and compiling cancel out.
//!
//! `cargo run --release -p tailgate-runtime --example hook_calls -- HOOK N`
//! where HOOK is `rate-limit`, `header-rewrite` or `log-shape`; the
//! configs are the bench's (bench/tailgate/plugins.toml.in). `log-shape N
//! B` hands the records over B at a time, as the log phase does (N counts
//! records). `cors N KIND` runs cors's request and response phases (docs'
//! example config, plugins/cors/tests/site.json) for a request of KIND:
//! `plain` (no `Origin`), `cross-origin` (a GET with an allowed `Origin`)
//! or `preflight`. `ban N` runs ban's request phase (one jail keyed by the
//! client, docs/ban.md's forge example) for a client banned nowhere;
//! `ban-log N B [STATUS]` its log hook on records of a passed request to
//! a watched path answered STATUS (401: a failure), B at a time.

use std::path::PathBuf;
use std::time::Duration;

use tailgate_runtime::{
    block_on, CacheStatus, ChainedPlugin, ConfiguredPlugin, Header, IpAddress, Limits, LogRecord,
    Method, Protocol, RequestHead, RequestStep, ResponseHead, Runtime, RuntimeConfig, Scheme, Var,
};

/// The shipped plugin's build, or `$HOOK_CALLS_WASM_DIR/{stem}.wasm` (to
/// measure a build from another checkout).
fn wasm(stem: &str) -> PathBuf {
    match std::env::var_os("HOOK_CALLS_WASM_DIR") {
        Some(dir) => PathBuf::from(dir).join(format!("{stem}.wasm")),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
            "../../plugins/target/wasm32-wasip2/release/{stem}.wasm"
        )),
    }
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.to_string(),
        value: value.as_bytes().to_vec(),
    }
}

/// wrk's request as the proxy hands it over (wrk sends a Host header only).
fn request() -> RequestHead {
    RequestHead {
        method: Method::Get,
        scheme: Scheme::Http,
        client_ip: IpAddress::V4(0x7F00_0001),
        host: Some("127.0.0.1".into()),
        path: Some("/1k".into()),
        query: None,
        headers: Some(vec![header("host", "127.0.0.1:8080")]),
        route: Some("bench".into()),
        request_id: Some("3f2b6c1a9e8d4f7b".into()),
    }
}

fn record() -> LogRecord {
    LogRecord {
        time_unix_ms: 1_735_787_045_678,
        client_ip: IpAddress::V4(0x7F00_0001),
        peer_ip: IpAddress::V4(0x7F00_0001),
        peer_port: 40_000,
        method: Method::Get,
        scheme: Scheme::Http,
        protocol: Protocol::Http11,
        status: 200,
        bytes_sent: 1024,
        bytes_received: 0,
        request_time: 0.000_412,
        upstream_response_time: Some(0.000_301),
        cache_status: None::<CacheStatus>,
        host: Some("127.0.0.1".into()),
        uri: Some("/1k".into()),
        upstream_addr: Some("127.0.0.1:28101".into()),
        route: Some("bench".into()),
        request_id: Some("3f2b6c1a9e8d4f7b".into()),
        user_agent: None,
        referer: None,
        http_host: Some("127.0.0.1:8080".into()),
        path: None,
        request_headers: Some(vec![header("host", "127.0.0.1:8080")]),
        response_headers: Some(vec![header("content-type", "text/plain")]),
        vars: Some(vec![Var {
            name: "limit_req_status".into(),
            value: "PASSED".into(),
        }]),
    }
}

fn configured(runtime: &Runtime, name: &str, stem: &str, config: &str) -> ConfiguredPlugin {
    let plugin = runtime.load(name, &wasm(stem)).expect("load plugin");
    let limits = Limits {
        hook_timeout: Duration::from_secs(5),
        memory_bytes: 16 << 20,
    };
    runtime
        .configure(&plugin, "bench", config, limits)
        .expect("configure")
}

/// `calls` request phases of `plugin` at its place in a chain, each on a
/// fresh copy of wrk's request (the phase applies its edits to the head).
fn request_phases(plugin: ConfiguredPlugin, calls: u32) {
    let chained = ChainedPlugin::new(plugin).expect("fixed edits go on the wire");
    let template = request();
    let mut edits = Vec::new();
    for _ in 0..calls {
        let mut req = template.clone();
        edits.clear();
        block_on(chained.request_phase(&mut req, &mut edits)).expect("request phase");
    }
}

/// ban's jail: docs/ban.md's forge example, with a window so long and a
/// `max_retry` so high that the measured failures never ban.
const BAN_JAIL: &str = r#"{"jails":[{"name":"forge-auth","statuses":[401,403],
    "path":"^/user/(login|sign_up|forgot_password)","max_retry":1024,
    "find_time":"1h","ban_time":"1h"}]}"#;

/// `calls` exchanges through cors's request phase and, when the request
/// goes on, its response phase, for a request of `kind`.
fn cors_phases(plugin: ConfiguredPlugin, calls: u32, kind: &str) {
    let chained = ChainedPlugin::new(plugin).expect("fixed edits go on the wire");
    let mut template = request();
    let headers = template.headers.get_or_insert_default();
    match kind {
        "plain" => {}
        "cross-origin" => headers.push(header("origin", "https://app.example.com")),
        "preflight" => {
            template.method = Method::Options;
            headers.push(header("origin", "https://app.example.com"));
            headers.push(header("access-control-request-method", "POST"));
        }
        other => {
            eprintln!("hook_calls: cors KIND is plain, cross-origin or preflight, not {other:?}");
            std::process::exit(2);
        }
    }
    let upstream = ResponseHead {
        status: 200,
        headers: Some(vec![header("content-type", "text/plain")]),
        host_generated: false,
    };
    let mut edits = Vec::new();
    for _ in 0..calls {
        let mut req = template.clone();
        edits.clear();
        let step = block_on(chained.request_phase(&mut req, &mut edits)).expect("request phase");
        if let RequestStep::Continue(_) = step {
            let mut resp = upstream.clone();
            edits.clear();
            block_on(chained.response_phase(&mut req, &mut resp, false, &mut edits))
                .expect("response phase");
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let hook = args.next().unwrap_or_default();
    let calls: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let cache = std::env::temp_dir().join("tailgate-hook-calls-cache");
    let runtime = Runtime::new(RuntimeConfig::new(&cache)).expect("runtime");
    match hook.as_str() {
        "rate-limit" => {
            let plugin = configured(
                &runtime,
                "rate-limit",
                "rate_limit",
                r#"{"limits":[{"zone":"per_ip","rate":"1000000r/s","burst":1000000,"nodelay":true}]}"#,
            );
            request_phases(plugin, calls);
        }
        "header-rewrite" => {
            let plugin = configured(
                &runtime,
                "header-rewrite",
                "header_rewrite",
                r#"{"request":{"set":{"X-Bench-Route":"bench","X-Real-IP":"{client_ip}"}},
                    "response":{"append":{"X-Frame-Options":"DENY","X-Content-Type-Options":"nosniff"},"always":true}}"#,
            );
            request_phases(plugin, calls);
        }
        "log-shape" => {
            // The log phase hands a route's records over in batches (up to
            // MAX_LOG_BATCH a call); N counts records.
            let batch: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
            let plugin = configured(&runtime, "log-shape", "log_shape", r#"{"preset":"nginx"}"#);
            let mut recs = vec![record(); batch.max(1)];
            for _ in 0..(calls as usize).div_ceil(recs.len()) {
                for verdict in block_on(plugin.log_batch_hook(&mut recs)) {
                    verdict.expect("on-log");
                }
            }
        }
        "cors" => {
            let kind = args.next().unwrap_or_else(|| "plain".to_owned());
            let site = include_str!("../../../plugins/cors/tests/site.json");
            let plugin = configured(&runtime, "cors", "cors", site);
            cors_phases(plugin, calls, &kind);
        }
        "ban" => request_phases(configured(&runtime, "ban", "ban", BAN_JAIL), calls),
        "ban-log" => {
            let batch: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
            let status: u16 = args.next().and_then(|n| n.parse().ok()).unwrap_or(401);
            let plugin = configured(&runtime, "ban", "ban", BAN_JAIL);
            // A failure on a watched path from a client no jail blocked
            // (the host's request check left `ban = PASSED`), keyed as the
            // hook of contract 0.9.0 left it too.
            let mut failure = record();
            failure.status = status;
            failure.method = Method::Post;
            failure.uri = Some("/user/login".into());
            failure.path = Some("/user/login".into());
            failure.vars = Some(vec![
                Var {
                    name: "ban".into(),
                    value: "PASSED".into(),
                },
                Var {
                    name: "ban_key.forge-auth".into(),
                    value: "127.0.0.1".into(),
                },
            ]);
            let mut recs = vec![failure; batch.max(1)];
            for _ in 0..(calls as usize).div_ceil(recs.len()) {
                for verdict in block_on(plugin.log_batch_hook(&mut recs)) {
                    verdict.expect("on-log");
                }
            }
        }
        other => {
            eprintln!(
                "hook_calls: unknown hook {other:?}: rate-limit, header-rewrite, log-shape, cors, \
                 ban or ban-log"
            );
            std::process::exit(2);
        }
    }
}
