//! The log-shape plugin through the real binary: the nginx preset field for
//! field, redaction, drop rules, sampling shared across instances, the
//! template format, the high-cardinality label guard, and the host's
//! fallback to the raw record when the shaping plugin fails. Labels, which
//! the binary does not print yet, are read from the real component through
//! the runtime's API.

use std::time::{Duration, Instant};

use tailgate_e2e::client::{get, get_with, send};
use tailgate_e2e::process::Tailgate;
use tailgate_e2e::upstream::TestUpstream;
use tailgate_e2e::{app_route, base_config};

/// One route `app` (host `app.test`) with the log-shape plugin configured
/// by `config` (TOML lines of `[routes.plugins.config]`); `route_extra` goes
/// into the `[[routes]]` table.
fn one_route(up: &TestUpstream, route_extra: &str, config: &str) -> String {
    base_config("")
        + &format!(
            r#"
{app}{route_extra}

[[routes.plugins]]
plugin = "log-shape"
[routes.plugins.config]
{config}
"#,
            app = app_route(&up.url())
        )
}

/// Access-log lines (JSON) whose `field` equals `value`.
fn lines_where(tg: &Tailgate, field: &str, value: &str) -> Vec<serde_json::Value> {
    tg.access_log()
        .into_iter()
        .filter(|l| l.get(field).and_then(|v| v.as_str()) == Some(value))
        .collect()
}

/// Let the log writer catch up: wait for the line of a sentinel request,
/// then a little longer for stragglers.
async fn settle(tg: &Tailgate, path: &str) {
    let r = get(tg.addr(), "app.test", path).await;
    assert_eq!(r.status, 404);
    tg.stdout
        .wait_for(Duration::from_secs(10), |l| l.contains(path))
        .unwrap_or_else(|| panic!("no line for {path}: {:?}", tg.stdout.snapshot()));
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_preset_reproduces_nginx_field_for_field() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&one_route(&up, "", r#"preset = "nginx""#));
    let r = get_with(
        tg.addr(),
        "app.test",
        "/search?q=tail",
        &[("user-agent", "e2e-agent/1.0 \"quoted\"")],
    )
    .await;
    assert_eq!(r.status, 200);
    let line = tg
        .stdout
        .wait_for(Duration::from_secs(10), |l| l.contains("/search?q=tail"))
        .expect("a line for the request");
    let rec: serde_json::Value = serde_json::from_str(&line).expect("the line is JSON");
    let keys: Vec<&str> = rec
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "time",
        "remote_addr",
        "client_ip",
        "request_method",
        "request_uri",
        "status",
        "body_bytes_sent",
        "request_time",
        "upstream_response_time",
        "upstream_cache_status",
        "http_host",
        "http_user_agent",
    ];
    // nginx's order, in the line itself.
    let positions: Vec<usize> = expected
        .iter()
        .map(|k| line.find(&format!("\"{k}\":")).expect("field in line"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{line}");
    expected.sort_unstable();
    assert_eq!(keys, expected, "exactly nginx's fields: {line}");

    let time = rec["time"].as_str().expect("time");
    assert!(
        time.len() == 25 && time.ends_with("+00:00") && time.as_bytes()[10] == b'T',
        "nginx $time_iso8601: {time}"
    );
    assert_eq!(rec["remote_addr"], "127.0.0.1");
    assert_eq!(rec["client_ip"], "127.0.0.1");
    assert_eq!(rec["request_method"], "GET");
    assert_eq!(rec["request_uri"], "/search?q=tail");
    assert_eq!(rec["status"], 200);
    assert_eq!(rec["body_bytes_sent"], r.body.len() as u64);
    assert!(rec["request_time"].is_f64());
    assert!(rec["upstream_response_time"].is_f64());
    assert_eq!(rec["upstream_cache_status"], "");
    assert_eq!(rec["http_host"], "app.test");
    assert_eq!(rec["http_user_agent"], "e2e-agent/1.0 \"quoted\"");
    // Seconds with three decimals, like nginx.
    for field in ["request_time", "upstream_response_time"] {
        let at = line.find(&format!("\"{field}\":")).expect("field") + field.len() + 3;
        let number: String = line[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let decimals = number.split_once('.').map(|(_, d)| d.len());
        assert_eq!(decimals, Some(3), "{field} = {number}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redaction_hides_query_parameters_headers_and_addresses() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&one_route(
        &up,
        "",
        r#"preset = "nginx"
fields = ["http_referer", "http_authorization", "request"]
redact = { query_params = ["token"], headers = ["authorization"], ip_truncate = true }"#,
    ));
    let r = get_with(
        tg.addr(),
        "app.test",
        "/login?user=ann&token=s3cret",
        &[
            ("authorization", "Bearer abc.def"),
            ("referer", "https://example.com/?token=t0ken&x=1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    // The upstream still gets everything: redaction is for the log only.
    assert_eq!(
        r.echoed_header("authorization").as_deref(),
        Some("Bearer abc.def")
    );
    let rec = tg.wait_log("request_uri", "/login?user=ann&token=REDACTED");
    assert_eq!(
        rec["request"],
        "GET /login?user=ann&token=REDACTED HTTP/1.1"
    );
    assert_eq!(
        rec["http_referer"],
        "https://example.com/?token=REDACTED&x=1"
    );
    assert_eq!(rec["http_authorization"], "REDACTED");
    assert_eq!(rec["client_ip"], "127.0.0.0");
    assert_eq!(rec["remote_addr"], "127.0.0.0");
    let stdout = tg.stdout.snapshot().join("\n");
    for secret in ["s3cret", "t0ken", "abc.def", "127.0.0.1"] {
        assert!(
            !stdout.contains(secret),
            "{secret} leaked into the access log"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_rules_keep_health_checks_out_unless_they_fail() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&one_route(
        &up,
        "",
        r#"fields = ["request_uri", "status"]
drop = [{ path = "^/status/", status = "200-299" }, { methods = ["OPTIONS"] }]"#,
    ));
    assert_eq!(get(tg.addr(), "app.test", "/status/204").await.status, 204);
    assert_eq!(get(tg.addr(), "app.test", "/status/503").await.status, 503);
    let options = send(
        tg.addr(),
        http::Method::OPTIONS,
        "app.test",
        "/kept-out",
        &[],
        "",
    )
    .await
    .expect("options");
    assert_eq!(options.status, 200);
    assert_eq!(get(tg.addr(), "app.test", "/kept").await.status, 200);
    settle(&tg, "/status/404").await;
    let uris: Vec<String> = tg
        .access_log()
        .iter()
        .filter_map(|l| l["request_uri"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(uris, vec!["/status/503", "/kept", "/status/404"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sampling_keeps_exactly_one_in_n_across_instances_and_every_error() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&one_route(
        &up,
        "",
        r#"fields = ["request_uri", "status"]
sample = { rate = 5, when = { status = "200-399" } }"#,
    ));
    // 40 concurrent successes: several instances on both workers draw from
    // one shared count, so exactly 8 lines are kept.
    let oks = (0..40).map(|_| get(tg.addr(), "app.test", "/sampled"));
    for r in futures_util::future::join_all(oks).await {
        assert_eq!(r.status, 200);
    }
    let errors = (0..6).map(|_| get(tg.addr(), "app.test", "/status/502"));
    for r in futures_util::future::join_all(errors).await {
        assert_eq!(r.status, 502);
    }
    settle(&tg, "/status/404").await;
    assert_eq!(lines_where(&tg, "request_uri", "/sampled").len(), 8);
    assert_eq!(
        lines_where(&tg, "request_uri", "/status/502").len(),
        6,
        "errors are always kept"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn template_format_writes_the_combined_log_format() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&one_route(
        &up,
        "",
        r#"format = "template"
template = '{client_ip} - - [{time_local}] "{request}" {status} {body_bytes_sent} "{http_referer}" "{http_user_agent}"'"#,
    ));
    let r = get_with(
        tg.addr(),
        "app.test",
        "/combined",
        &[("user-agent", "curl/8.5")],
    )
    .await;
    let line = tg
        .stdout
        .wait_for(Duration::from_secs(10), |l| l.contains("/combined"))
        .expect("a line");
    let (addr, rest) = line.split_once(" - - [").expect("combined prefix");
    assert_eq!(addr, "127.0.0.1");
    let (time, rest) = rest.split_once("] ").expect("time");
    assert!(time.ends_with(" +0000") && time.len() == 26, "{time}");
    assert_eq!(
        rest,
        format!(
            "\"GET /combined HTTP/1.1\" 200 {} \"-\" \"curl/8.5\"",
            r.body.len()
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn high_cardinality_labels_are_refused_at_startup() {
    let up = TestUpstream::start();
    let err = Tailgate::try_start(&one_route(
        &up,
        "",
        r#"labels = { job = "tailgate", ip = "{client_ip}" }"#,
    ))
    .err()
    .expect("config refused");
    assert!(
        err.contains("labels.ip: `{client_ip}` uses `client_ip`, which has unbounded values"),
        "{err}"
    );
    // Allowed on purpose: the proxy starts.
    let tg = Tailgate::try_start(&one_route(
        &up,
        "",
        "labels = { ip = \"{client_ip}\" }\nallow_high_cardinality = true",
    ));
    assert!(tg.is_ok(), "{:?}", tg.err());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_shaper_falls_back_to_the_raw_record() {
    // Memory just above what the plugin needs to start: a request whose
    // `x-big` header (which the line logs, so the plugin asks for it)
    // cannot be copied into it makes its log hook fail.
    let up = TestUpstream::start();
    let tg = Tailgate::start(&one_route(
        &up,
        r#"memory_limit = "1344KiB""#,
        r#"fields = ["request_uri", "status", "http_x_big"]"#,
    ));
    assert_eq!(get(tg.addr(), "app.test", "/before").await.status, 200);
    // Under the proxy's 64 KiB request-head bound, over what the instance can take.
    let big = "x".repeat(60 * 1024);
    let r = get_with(tg.addr(), "app.test", "/big", &[("x-big", big.as_str())]).await;
    assert_eq!(r.status, 200, "a log failure does not touch the response");
    assert_eq!(get(tg.addr(), "app.test", "/after").await.status, 200);

    let before = tg.wait_log("request_uri", "/before");
    assert_eq!(
        before.as_object().map(|o| o.len()),
        Some(3),
        "shaped: {before}"
    );
    // The raw record, in the host's default line: never lost.
    let raw = tg.wait_log("request_uri", "/big");
    assert_eq!(raw["status"], 200);
    assert_eq!(raw["route"], "app");
    assert!(raw.get("server_protocol").is_some(), "default line: {raw}");
    // A fresh instance shapes the next line.
    let after = tg.wait_log("request_uri", "/after");
    assert_eq!(
        after.as_object().map(|o| o.len()),
        Some(3),
        "shaped: {after}"
    );
    let warned = tg.stderr.wait_for(Duration::from_secs(5), |l| {
        l.contains("log-shape") && l.contains("log hook failed")
    });
    assert!(
        warned.is_some(),
        "the failure is reported; stderr:\n{}",
        tg.stderr.snapshot().join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_log_plugin_runs_the_last_shape_wins_and_a_trap_keeps_the_earlier_shape() {
    let up = TestUpstream::start();
    let config = one_route(&up, "", r#"fields = ["request_uri", "status"]"#)
        + r#"
[[routes.plugins]]
plugin = "fault-injector"
[routes.plugins.config]
mode = "trap"
hook = "log"
hooks = ["log"]
only_path = "/two"
"#;
    let tg = Tailgate::start(&config);
    for path in ["/one", "/two", "/three"] {
        assert_eq!(get(tg.addr(), "app.test", path).await.status, 200);
    }
    // Both log hooks run. The fault-injector is the chain's last: its text
    // line wins over log-shape's, except where it traps (on /two's record,
    // whether the three records came in one batch or several): a trap
    // counts as keep, so log-shape's line stands, not the raw record, and
    // the records batched with it keep the fault-injector's line.
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let lines = tg.stdout.snapshot();
        let done = lines.iter().any(|l| l.contains("/three"));
        if done || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let one = lines.iter().find(|l| l.contains("/one")).expect("/one");
    assert!(one.starts_with("GET /one 200 "), "{one}");
    let two = lines.iter().find(|l| l.contains("/two")).expect("/two");
    let shaped: serde_json::Value = serde_json::from_str(two).expect("log-shape's line, as JSON");
    assert_eq!(shaped["request_uri"], "/two", "{two}");
    assert!(
        shaped.get("server_protocol").is_none(),
        "not the raw record: {two}"
    );
    let three = lines.iter().find(|l| l.contains("/three")).expect("/three");
    assert!(three.starts_with("GET /three 200 "), "{three}");
}

/// Labels travel beside the line to the Loki pusher (not printed by the
/// binary yet): read them from the real component.
#[test]
fn labels_come_from_the_real_component() {
    use tailgate_runtime::{Header, Limits, LogRecord, Runtime, RuntimeConfig, Var};

    let cache = tailgate_e2e::process::test_cache_dir();
    let mut config = RuntimeConfig::new(cache);
    config.max_instances = 8;
    let runtime = Runtime::new(config).expect("runtime");
    let plugin = runtime
        .load("log-shape", &tailgate_e2e::plugin_wasm("log_shape"))
        .expect("load log-shape");
    let limits = Limits {
        hook_timeout: Duration::from_millis(500),
        memory_bytes: 16 << 20,
    };
    let shaper = runtime
        .configure(
            &plugin,
            "app",
            r#"{"fields":["request_uri","status"],
                "labels":{"job":"tailgate","host":"{host}","status_class":"{status_class}",
                          "method":"{request_method}","limited":"{limit_req_status}"}}"#,
            limits,
        )
        .expect("configure");
    let mut record = LogRecord {
        time_unix_ms: 1_735_787_045_678,
        client_ip: tailgate_runtime::IpAddress::V4(0xC633_6404),
        peer_ip: tailgate_runtime::IpAddress::V4(0x0A00_0002),
        peer_port: 5555,
        method: tailgate_runtime::Method::Other("BREW".into()),
        scheme: tailgate_runtime::Scheme::Https,
        protocol: tailgate_runtime::Protocol::Http11,
        host: Some("docs.example.com".into()),
        uri: Some("/a?b=c".into()),
        status: 429,
        bytes_sent: 18,
        bytes_received: 0,
        request_time: 0.0004,
        upstream_response_time: None,
        upstream_addr: None,
        cache_status: None,
        route: Some("app".into()),
        request_id: Some("r-1".into()),
        user_agent: Some("curl/8".into()),
        referer: Some(String::new()),
        http_host: Some(String::new()),
        path: None,
        request_headers: Some(vec![Header {
            name: "host".into(),
            value: b"docs.example.com".to_vec(),
        }]),
        response_headers: Some(vec![]),
        vars: Some(vec![Var {
            name: "limit_req_status".into(),
            value: "REJECTED".into(),
        }]),
    };
    let line = shaper
        .on_log(&mut record)
        .expect("no fault")
        .into_line()
        .expect("line kept");
    assert_eq!(line.line, r#"{"request_uri":"/a?b=c","status":429}"#);
    assert_eq!(
        line.labels,
        vec![
            ("host".to_owned(), "docs.example.com".to_owned()),
            ("job".to_owned(), "tailgate".to_owned()),
            ("limited".to_owned(), "REJECTED".to_owned()),
            ("method".to_owned(), "OTHER".to_owned()),
            ("status_class".to_owned(), "4xx".to_owned()),
        ]
    );
}
