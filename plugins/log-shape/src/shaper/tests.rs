//! The shaper end to end on records as the host hands them over, against a
//! scripted host (a shared counter and a metric log).

use std::cell::{Cell, RefCell};

use tailgate_plugin_sdk::testing::{
    assert_reads_exactly, documented_configs, narrowed_log_record, repo_file,
};

use super::*;
use crate::fields::tests::record;

#[derive(Default)]
struct ScriptedHost {
    count: Cell<i64>,
    /// The counter keys asked for, in order.
    keys: RefCell<Vec<String>>,
    discarded: RefCell<Vec<String>>,
}

impl SampleCounter for ScriptedHost {
    fn next(&self, key: &str) -> i64 {
        self.keys.borrow_mut().push(key.to_owned());
        self.count.set(self.count.get() + 1);
        self.count.get()
    }
}

impl LogShapeHost for ScriptedHost {
    fn counter_add(&self, name: &str, labels: &[(&str, &str)], value: u64) {
        assert_eq!((name, labels.len(), value), (DISCARDED_METRIC, 1, 1));
        assert_eq!(labels[0].0, "reason");
        self.discarded.borrow_mut().push(labels[0].1.to_owned());
    }
}

fn shaper(json: &str) -> LogShaper {
    LogShaper::from_config(&Config::new(json)).unwrap_or_else(|err| panic!("{err}"))
}

fn rejected(json: &str) -> String {
    LogShaper::from_config(&Config::new(json))
        .expect_err("config should be rejected")
        .to_string()
}

fn line(shaper: &LogShaper, rec: &LogRecord) -> String {
    shaper
        .on_log(rec, &ScriptedHost::default())
        .expect("line kept")
        .line
}

#[test]
fn the_nginx_preset_reproduces_nginx_field_for_field() {
    let rec = record();
    let line = line(&shaper(r#"{"preset":"nginx"}"#), &rec);
    assert_eq!(
        line,
        concat!(
            r#"{"time":"2025-01-02T03:04:05+00:00","remote_addr":"10.0.0.2","client_ip":"198.51.100.4","#,
            r#""request_method":"GET","request_uri":"/search?q=tail&token=s3cret","status":200,"#,
            r#""body_bytes_sent":1234,"request_time":0.012,"upstream_response_time":0.010,"#,
            r#""upstream_cache_status":"","http_host":"docs.example.com:8443","#,
            r#""http_user_agent":"curl/8 \"quoted\""}"#
        )
    );
    let parsed: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
    let keys: Vec<&str> = parsed
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut preset = NGINX_PRESET.to_vec();
    preset.sort_unstable();
    assert_eq!(keys, preset, "exactly the preset's fields");
}

#[test]
fn an_empty_config_is_the_nginx_preset_without_labels() {
    let rec = record();
    let shaped = shaper("{}")
        .on_log(&rec, &ScriptedHost::default())
        .expect("kept");
    assert_eq!(shaped.line, line(&shaper(r#"{"preset":"nginx"}"#), &rec));
    assert!(shaped.labels.is_empty());
}

#[test]
fn fields_choose_rename_add_and_exclude() {
    let rec = record();
    assert_eq!(
        line(
            &shaper(
                r#"{"fields":["status",{"name":"ua","from":"http_user_agent"},"limit_req_status"]}"#
            ),
            &rec
        ),
        r#"{"status":200,"ua":"curl/8 \"quoted\"","limit_req_status":"PASSED"}"#
    );
    let shaped = line(
        &shaper(
            r#"{"preset":"nginx",
                "fields":["request_id","route",{"name":"xff","from":"request_header:x-forwarded-for"},"var:missing"],
                "exclude":["upstream_cache_status","http_user_agent","time"],
                "rename":{"request_time":"duration","request_id":"rid"}}"#,
        ),
        &rec,
    );
    let parsed: serde_json::Value = serde_json::from_str(&shaped).expect("valid JSON");
    assert_eq!(parsed["duration"], 0.012);
    assert_eq!(parsed["rid"], "01HZX");
    assert_eq!(parsed["route"], "docs");
    assert_eq!(parsed["xff"], "10.0.0.1, 10.0.0.2");
    assert_eq!(parsed["var:missing"], "");
    assert!(parsed.get("time").is_none() && parsed.get("request_time").is_none());
    assert!(
        shaped.starts_with(r#"{"remote_addr":"10.0.0.2","#),
        "{shaped}"
    );
    assert!(shaped.ends_with(r#""var:missing":""}"#), "{shaped}");
}

#[test]
fn logfmt_and_template_formats() {
    let rec = record();
    assert_eq!(
        line(
            &shaper(
                r#"{"format":"logfmt","fields":["request_method","status","request_time","route"]}"#
            ),
            &rec
        ),
        "request_method=GET status=200 request_time=0.012 route=docs"
    );
    assert_eq!(
        line(
            &shaper(
                r#"{"format":"template","template":"{client_ip} {request_method} {request_uri} -> {status} in {request_time}s"}"#
            ),
            &rec
        ),
        "198.51.100.4 GET /search?q=tail&token=s3cret -> 200 in 0.012s"
    );
}

#[test]
fn redaction_covers_queries_headers_and_ips() {
    let rec = record();
    let shaper = shaper(
        r#"{"preset":"nginx",
            "fields":["http_referer","http_authorization","request"],
            "redact":{"query_params":["token"],"headers":["authorization"],"ip_truncate":true}}"#,
    );
    let shaped = line(&shaper, &rec);
    let parsed: serde_json::Value = serde_json::from_str(&shaped).expect("valid JSON");
    assert_eq!(parsed["request_uri"], "/search?q=tail&token=REDACTED");
    assert_eq!(
        parsed["request"],
        "GET /search?q=tail&token=REDACTED HTTP/1.1"
    );
    assert_eq!(
        parsed["http_referer"],
        "https://example.com/?token=REDACTED"
    );
    assert_eq!(parsed["http_authorization"], "REDACTED");
    assert_eq!(parsed["client_ip"], "198.51.100.0");
    assert_eq!(parsed["remote_addr"], "10.0.0.0");
    assert!(!shaped.contains("s3cret") && !shaped.contains("Bearer"));
}

#[test]
fn drop_rules_discard_lines_and_count_them() {
    let shaper =
        shaper(r#"{"drop":[{"path":"^/healthz$","status":"200-399"},{"methods":["OPTIONS"]}]}"#);
    let host = ScriptedHost::default();
    let mut rec = record();
    rec.uri = "/healthz".into();
    assert!(shaper.on_log(&rec, &host).is_none());
    rec.status = 500;
    assert!(
        shaper.on_log(&rec, &host).is_some(),
        "a failing health check is kept"
    );
    rec.uri = "/api".into();
    rec.method = tailgate_plugin_sdk::Method::from_name("OPTIONS");
    assert!(shaper.on_log(&rec, &host).is_none());
    assert_eq!(*host.discarded.borrow(), vec!["drop", "drop"]);
}

#[test]
fn sampling_keeps_one_in_n_successes_and_every_error() {
    let shaper = shaper(r#"{"sample":{"rate":3,"when":{"status":"200-399"}}}"#);
    let host = ScriptedHost::default();
    let mut rec = record();
    let kept: Vec<bool> = (0..6)
        .map(|_| shaper.on_log(&rec, &host).is_some())
        .collect();
    assert_eq!(kept, vec![true, false, false, true, false, false]);
    rec.status = 502;
    assert!((0..5).all(|_| shaper.on_log(&rec, &host).is_some()));
    assert_eq!(host.discarded.borrow().len(), 4);
    assert!(host.discarded.borrow().iter().all(|r| r == "sample"));
}

#[test]
fn labels_come_with_the_line() {
    let shaper =
        shaper(r#"{"labels":{"job":"tailgate","host":"{host}","status_class":"{status_class}"}}"#);
    let shaped = shaper
        .on_log(&record(), &ScriptedHost::default())
        .expect("kept");
    assert_eq!(
        shaped.labels,
        vec![
            ("host".to_owned(), "docs.example.com".to_owned()),
            ("job".to_owned(), "tailgate".to_owned()),
            ("status_class".to_owned(), "2xx".to_owned()),
        ]
    );
    assert!(rejected(r#"{"labels":{"ip":"{client_ip}"}}"#)
        .starts_with("labels.ip: `{client_ip}` uses `client_ip`, which has unbounded values"));
}

#[test]
fn config_errors_name_the_key() {
    assert_eq!(
        rejected(r#"{"format":"xml"}"#),
        "format: unknown variant `xml`, expected one of `json`, `logfmt`, `template`"
    );
    assert_eq!(
        rejected(r#"{"preset":"apache"}"#),
        "preset: unknown variant `apache`, expected `nginx`"
    );
    assert_eq!(
        rejected(r#"{"format":"template"}"#),
        "template: format = \"template\" needs a `template`, e.g. \"{remote_addr} {request} {status}\""
    );
    assert_eq!(
        rejected(r#"{"format":"template","template":"{status}","fields":["status"]}"#),
        "fields: not used with format = \"template\": the template names its fields"
    );
    assert_eq!(
        rejected(r#"{"template":"{status}"}"#),
        "template: only used with format = \"template\""
    );
    assert!(rejected(r#"{"format":"template","template":"{stauts}"}"#)
        .starts_with("template: unknown field `stauts`"));
    assert!(rejected(r#"{"fields":["status","stauts"]}"#)
        .starts_with("fields[1]: unknown field `stauts`"));
    assert_eq!(
        rejected(r#"{"fields":[{"name":"s","form":"status"}]}"#),
        "fields[0]: unknown field `form`, expected `name` or `from`"
    );
    assert_eq!(
        rejected(r#"{"fields":[{"name":"s"}]}"#),
        "fields[0]: missing field `from`"
    );
    assert_eq!(
        rejected(r#"{"fields":[3]}"#),
        "fields[0]: invalid type: integer `3`, expected a field name or a table { name = \"...\", from = \"...\" }"
    );
    assert_eq!(
        rejected(r#"{"preset":"nginx","fields":["status"]}"#),
        "fields[0]: `status` is already in the line (rename or exclude the first one)"
    );
    assert_eq!(
        rejected(r#"{"fields":[{"name":"a b","from":"status"}]}"#),
        "fields[0]: `a b` is not a field name: use letters, digits, `_`, `-`, `.`, `:` and `@`"
    );
    assert_eq!(
        rejected(r#"{"exclude":["nope"]}"#),
        "exclude[0]: `nope` is not in the line"
    );
    assert_eq!(
        rejected(r#"{"rename":{"nope":"x"}}"#),
        "rename.nope: `nope` is not in the line"
    );
    assert_eq!(
        rejected(r#"{"rename":{"time":"status"}}"#),
        "rename.time: `status` is already in the line"
    );
    assert_eq!(
        rejected(r#"{"fields":["status"],"exclude":["status"]}"#),
        "fields: the line has no fields left; drop lines with `drop` rules instead"
    );
    assert_eq!(
        rejected(r#"{"redact":{"ip_trunc":true}}"#),
        "redact.ip_trunc: unknown field `ip_trunc`, expected one of `query_params`, `headers`, \
         `ip_truncate`, `ipv4_prefix`, `ipv6_prefix`"
    );
    assert!(rejected(r#"{"drop":[{}]}"#).starts_with("drop[0]: give `path`, `status`, `methods`"));
    assert_eq!(
        rejected(r#"{"sample":{"when":{"status":"2xx"}}}"#),
        "sample: missing field `rate`"
    );
}

#[test]
fn the_documented_examples_are_accepted() {
    let doc = repo_file(env!("CARGO_MANIFEST_DIR"), "docs/log-shape.md");
    let tables = documented_configs(&doc, "log-shape");
    assert!(tables.len() >= 4, "the doc shows log-shape configs");
    for json in &tables {
        let shaper = LogShaper::from_config(&Config::new(json.as_str()))
            .unwrap_or_else(|err| panic!("documented config rejected: {err}\n{json}"));
        // Every documented config shapes a plain record (or drops it on purpose).
        let _ = shaper.on_log(&record(), &ScriptedHost::default());
        assert_reads_only_what_it_declares(&shaper, json);
    }
}

#[test]
fn the_host_is_asked_only_for_the_headers_the_line_and_labels_read() {
    // The nginx preset: the Host header and the user agent come in fields
    // of their own.
    let preset = shaper(r#"{"preset":"nginx"}"#);
    assert_eq!(preset.request_headers(), HeaderFilter::none());
    assert_eq!(preset.response_headers(), HeaderFilter::none());
    let custom = shaper(
        r#"{"fields":[{"name":"trace","from":"http_x_trace"},
                      {"name":"ua","from":"http_user_agent"},
                      {"name":"type","from":"sent_http_content_type"},
                      {"name":"cache","from":"response_header:X-Cache"}],
            "labels":{"tenant":"{request_header:x-tenant}"},
            "allow_high_cardinality":true}"#,
    );
    assert_eq!(
        custom.request_headers(),
        HeaderFilter::only(["x-trace", "x-tenant"])
    );
    assert_eq!(
        custom.response_headers(),
        HeaderFilter::only(["content-type", "x-cache"])
    );
    let template =
        shaper(r#"{"format":"template","template":"{status} {http_referer} {http_cookie}"}"#);
    assert_eq!(template.request_headers(), HeaderFilter::only(["cookie"]));
}

/// Records that meet the documented drop rules, sampling and fields: a
/// cache hit, a search, health checks up and down, a preflight, an error
/// without upstream or Host header, static files.
fn sample_records() -> Vec<LogRecord> {
    let with = |method: &str, uri: &str, status: u16| LogRecord {
        method: tailgate_plugin_sdk::Method::from_name(method),
        uri: uri.into(),
        status,
        ..record()
    };
    let mut failed = with("POST", "/api/items?token=t", 502);
    failed.upstream_addr = None.into();
    failed.upstream_response_time = None;
    failed.request_headers.retain(|h| h.name != "host");
    failed.http_host = "docs.example.com".into();
    let mut hit = with("GET", "/static/app.css", 200);
    hit.cache_status = Some(tailgate_plugin_sdk::CacheStatus::Hit);
    // The hit first: the first line of a sampled class is kept.
    let mut out = vec![
        hit,
        record(),
        with("GET", "/healthz", 200),
        with("GET", "/healthz", 503),
        with("OPTIONS", "/api", 204),
        failed,
    ];
    out.extend((0..3).map(|_| with("GET", "/static/app.js", 200)));
    out
}

/// What `on-log` makes of the sample records (lines, labels, drops, the
/// sampling keys), each field outside `fields` and each header field
/// outside the declared filters left out the way the host leaves it out.
fn run(shaper: &LogShaper, fields: LogFieldSet) -> String {
    let host = ScriptedHost::default();
    let (request_headers, response_headers) = (shaper.request_headers(), shaper.response_headers());
    let lines: Vec<Option<LogLine>> = sample_records()
        .iter()
        .map(|full| {
            let rec = narrowed_log_record(full, fields, &request_headers, &response_headers);
            shaper.on_log(&rec, &host)
        })
        .collect();
    format!(
        "{lines:?}\n{:?}\n{:?}",
        host.keys.borrow(),
        host.discarded.borrow()
    )
}

/// The hook does the same from only the declared fields as from all
/// of them, and every declared field changes what it does.
fn assert_reads_only_what_it_declares(shaper: &LogShaper, json: &str) {
    assert_reads_exactly(
        shaper.log_fields(),
        LogFieldSet::all(),
        |fields| run(shaper, fields),
        json,
    );
}

#[test]
fn the_host_is_asked_only_for_the_fields_the_line_rules_and_labels_read() {
    let cases = [
        // The nginx preset.
        (
            "{}",
            // (Addresses, the method and the cache status always come.)
            LogFieldSet::URI | LogFieldSet::HTTP_HOST | LogFieldSet::USER_AGENT,
        ),
        (
            r#"{"fields":["status","request_time","time","time_local","msec","sent_http_x_cache"]}"#,
            LogFieldSet::empty(),
        ),
        (
            r#"{"format":"template","template":"{request} {timestamp} {http_x_trace}"}"#,
            LogFieldSet::URI,
        ),
        (
            r#"{"fields":["limit_req_status","http_referer","scheme","request_id","remote_port"]}"#,
            LogFieldSet::VARS | LogFieldSet::REFERER | LogFieldSet::REQUEST_ID,
        ),
        (
            r#"{"fields":["status"],
                "labels":{"m":"{request_method}","c":"{upstream_cache_status}","u":"{upstream_addr}"}}"#,
            LogFieldSet::UPSTREAM_ADDR,
        ),
        // Drop rules and sampling match on the method and the URI's path;
        // sampling counts per route.
        (
            r#"{"fields":["status"],"drop":[{"methods":["OPTIONS"],"status":"2xx"}],
                "sample":{"rate":2,"when":{"path":"^/static/"}}}"#,
            LogFieldSet::URI | LogFieldSet::ROUTE,
        ),
        (
            r#"{"fields":["status"],"sample":{"rate":2,"when":{"status":"2xx"}}}"#,
            LogFieldSet::ROUTE,
        ),
        // At rate 1 sampling keeps every line without a look.
        (
            r#"{"fields":["status"],"sample":{"rate":1,"when":{"path":"^/x"}}}"#,
            LogFieldSet::empty(),
        ),
    ];
    for (json, expected) in cases {
        let shaper = shaper(json);
        assert_eq!(shaper.log_fields(), expected, "{json}");
        assert_reads_only_what_it_declares(&shaper, json);
    }
}
