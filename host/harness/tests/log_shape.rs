//! The shipped `log-shape` plugin through the harness: the nginx preset
//! line, logfmt with redaction, labels and the cardinality guard, drop
//! rules, and 1-in-N sampling on the host's shared counter (inspectable),
//! with the discarded lines counted in metrics.

mod common;

use tailgate_harness::{Harness, LogEntry, PluginConfig};

fn configured<'h>(harness: &'h Harness, toml: &str) -> tailgate_harness::TestPlugin<'h> {
    let plugin = harness.load(common::wasm("log_shape")).expect("load");
    let config = PluginConfig::toml(toml).expect("toml");
    harness.configure(&plugin, config).expect("configure")
}

#[test]
fn the_nginx_preset_writes_nginx_fields_in_order() {
    let harness = common::builder()
        .start_ms(1_735_787_045_678)
        .build()
        .expect("harness");
    let shaper = configured(&harness, "");
    let outcome = shaper.on_log(
        LogEntry::get("/search?q=tail")
            .client_ip("198.51.100.4")
            .bytes_sent(1234)
            .request_time(0.012)
            .upstream("10.0.0.5:8080", 0.010)
            .request_header("user-agent", "curl/8.5.0"),
    );
    let line = outcome.expect_line();
    assert_eq!(
        line.line,
        r#"{"time":"2025-01-02T03:04:05+00:00","remote_addr":"203.0.113.7","client_ip":"198.51.100.4","request_method":"GET","request_uri":"/search?q=tail","status":200,"body_bytes_sent":1234,"request_time":0.012,"upstream_response_time":0.010,"upstream_cache_status":"","http_host":"example.com","http_user_agent":"curl/8.5.0"}"#
    );
    assert!(line.labels.is_empty());
}

#[test]
fn logfmt_with_redaction_and_labels() {
    let harness = common::harness();
    let shaper = configured(
        &harness,
        r#"
format = "logfmt"
fields = ["request_method", "request_uri", "status", { name = "key", from = "request_header:x-api-key" }]
redact = { query_params = ["token"], headers = ["x-api-key"] }
labels = { job = "tailgate", status_class = "{status_class}" }
"#,
    );
    let outcome = shaper.on_log(
        LogEntry::new("POST", "/v1/items?token=s3cret&page=2", 201)
            .request_header("x-api-key", "k-123"),
    );
    let line = outcome.expect_line();
    assert_eq!(
        line.line,
        r#"request_method=POST request_uri="/v1/items?token=REDACTED&page=2" status=201 key=REDACTED"#
    );
    assert_eq!(outcome.label("job"), Some("tailgate"));
    assert_eq!(outcome.label("status_class"), Some("2xx"));
}

#[test]
fn drop_rules_and_shared_sampling_discard_lines_and_count_them() {
    let harness = common::harness();
    let shaper = configured(
        &harness,
        r#"
drop = [{ path = "^/healthz$", status = "200-399" }]
sample = { rate = 3, when = { path = "^/static/" } }
"#,
    );
    shaper.on_log(LogEntry::get("/healthz")).expect_dropped();
    shaper
        .on_log(LogEntry::get("/healthz").status(503))
        .expect_line();
    let kept: Vec<bool> = (0..6)
        .map(|_| {
            shaper
                .on_log(LogEntry::get("/static/app.js"))
                .result()
                .as_ref()
                .expect("no fault")
                != &tailgate_harness::LogVerdict::Drop
        })
        .collect();
    // 1 in 3, counted on the host's shared counter: the 1st, 4th, ... kept.
    assert_eq!(kept, [true, false, false, true, false, false]);
    let counters = harness.state("log-shape").counters();
    assert_eq!(counters.len(), 1, "{counters:?}");
    assert_eq!(counters[0].value, 6);

    let metrics = harness.metrics();
    assert_eq!(
        metrics.plugin_counter("log_lines_discarded", &[("reason", "drop")]),
        1
    );
    assert_eq!(
        metrics.plugin_counter("log_lines_discarded", &[("reason", "sample")]),
        4
    );
}

#[test]
fn high_cardinality_labels_are_refused() {
    let harness = common::harness();
    let plugin = harness.load(common::wasm("log_shape")).expect("load");
    let config = PluginConfig::toml(r#"labels = { ip = "{client_ip}" }"#).expect("toml");
    let err = harness.configure(&plugin, config).err().expect("rejected");
    assert!(
        err.rejection().is_some_and(|m| m
            .starts_with("labels.ip: `{client_ip}` uses `client_ip`, which has unbounded values")),
        "{err}"
    );
}
