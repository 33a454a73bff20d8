//! `/metrics` on the admin listener through the real binary: the nginx
//! families under the configured prefix with their labels, the duration
//! buckets, constant labels and Fly's `FLY_REGION` / `FLY_MACHINE_ID`, and
//! the families beyond the access log (upstream latency, connections,
//! plugins, rate limits, pusher health).

use std::collections::BTreeMap;

use bytes::Bytes;
use http::Method;
use tailgate_e2e::client::{get, send};
use tailgate_e2e::metrics_scrape::{matching, scrape, scrape_text, sum};
use tailgate_e2e::process::Tailgate;
use tailgate_e2e::upstream::TestUpstream;
use tailgate_e2e::{app_route, base_config};

fn config(up: &TestUpstream, telemetry: &str) -> String {
    base_config("")
        + telemetry
        + &format!(
            r#"
{app}
[[routes.plugins]]
plugin = "rate-limit"
[routes.plugins.config]
limits = [{{ zone = "per_ip", rate = "1000r/s", burst = 1000, nodelay = true }}]

[[routes.plugins]]
plugin = "header-rewrite"
[routes.plugins.config]
# A deny rule keeps the request hook a call (header edits, templated or
# not, are fixed edits the host makes without one), so its call metrics
# have something to count.
response.set = {{ "X-Seen" = "{{request_id}}" }}
deny = [{{ path = "^/never$" }}]

[[routes]]
name = "other"
hosts = ["other.test"]
path = "/"
upstream = "app"
"#,
            app = app_route(&up.url())
        )
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_nginx_families_carry_the_prefix_constant_and_fly_labels() {
    let up = TestUpstream::start();
    let telemetry = r#"
[telemetry]
metrics_prefix = "flyio_nginx"
labels = { instance = "flyio-proxy", region = "${FLY_REGION}", machine = "${FLY_MACHINE_ID}", absent = "${TAILGATE_TEST_UNSET_VAR}" }
"#;
    let tg = Tailgate::start_with_env(
        &config(&up, telemetry),
        &[("FLY_REGION", "ams"), ("FLY_MACHINE_ID", "e784079b449483")],
    );
    for _ in 0..3 {
        assert_eq!(get(tg.addr(), "app.test", "/bytes/100").await.status, 200);
    }
    assert_eq!(get(tg.addr(), "app.test", "/status/404").await.status, 404);
    assert_eq!(
        get(tg.addr(), "other.test", "/status/503").await.status,
        503
    );
    let posted = send(
        tg.addr(),
        Method::POST,
        "app.test",
        "/echo",
        &[],
        Bytes::from("hi"),
    )
    .await
    .expect("POST");
    assert_eq!(posted.status, 200);

    let admin = tg.admin_addr();
    // The log phase runs when the body ends: wait for the last line.
    tg.wait_log("request_method", "POST");
    let samples = scrape(admin).await;
    let constant = [
        ("instance", "flyio-proxy"),
        ("region", "ams"),
        ("machine", "e784079b449483"),
    ];

    let requests = matching(&samples, "flyio_nginx_http_requests_total", &[]);
    assert!(!requests.is_empty(), "no request counter: {samples:?}");
    for s in &requests {
        for (k, v) in constant {
            assert_eq!(s.labels.get(k).map(String::as_str), Some(v), "{s:?}");
        }
        assert!(
            !s.labels.contains_key("absent"),
            "unset variable → no label: {s:?}"
        );
    }
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut all = constant.to_vec();
        all.extend_from_slice(extra);
        labels(&all)
    };
    let find = |name: &str, want: BTreeMap<String, String>| {
        samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
            .unwrap_or_else(|| panic!("no {name}{want:?} in:\n{samples:#?}"))
    };
    assert_eq!(
        find(
            "flyio_nginx_http_requests_total",
            with(&[("host", "app.test"), ("method", "GET"), ("status", "200")])
        ),
        3.0
    );
    assert_eq!(
        find(
            "flyio_nginx_http_requests_total",
            with(&[("host", "app.test"), ("method", "GET"), ("status", "404")])
        ),
        1.0
    );
    assert_eq!(
        find(
            "flyio_nginx_http_requests_total",
            with(&[("host", "other.test"), ("method", "GET"), ("status", "503")])
        ),
        1.0
    );
    assert_eq!(
        find(
            "flyio_nginx_http_requests_total",
            with(&[("host", "app.test"), ("method", "POST"), ("status", "200")])
        ),
        1.0
    );

    // Response bytes by host: three 100-byte bodies plus the others.
    let app_bytes = find(
        "flyio_nginx_http_response_bytes_total",
        with(&[("host", "app.test")]),
    );
    assert!(app_bytes >= 300.0, "{app_bytes}");

    // The duration histogram: exactly nginx's buckets, cumulative, +Inf = count.
    let buckets = matching(
        &samples,
        "flyio_nginx_http_request_duration_seconds_bucket",
        &[("host", "app.test")],
    );
    let mut les: Vec<String> = buckets.iter().map(|s| s.labels["le"].clone()).collect();
    les.sort_by(|a, b| {
        let f = |x: &str| {
            if x == "+Inf" {
                f64::INFINITY
            } else {
                x.parse().unwrap()
            }
        };
        f(a).partial_cmp(&f(b)).unwrap()
    });
    assert_eq!(
        les,
        ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]
    );
    let count = sum(
        &samples,
        "flyio_nginx_http_request_duration_seconds_count",
        &[("host", "app.test")],
    );
    assert_eq!(count, 5.0);
    let inf = sum(
        &samples,
        "flyio_nginx_http_request_duration_seconds_bucket",
        &[("host", "app.test"), ("le", "+Inf")],
    );
    assert_eq!(inf, 5.0);
    let mut last = 0.0;
    for le in &les {
        let v = sum(
            &samples,
            "flyio_nginx_http_request_duration_seconds_bucket",
            &[("host", "app.test"), ("le", le)],
        );
        assert!(v >= last, "buckets are cumulative");
        last = v;
    }
    assert!(
        sum(
            &samples,
            "flyio_nginx_http_request_duration_seconds_sum",
            &[("host", "app.test")]
        ) > 0.0
    );

    // Beyond the access log.
    assert_eq!(
        sum(
            &samples,
            "flyio_nginx_upstream_response_seconds_count",
            &[("upstream", "app")]
        ),
        6.0
    );
    assert!(!matching(&samples, "flyio_nginx_active_connections", &[]).is_empty());
    // The plugins' request hook calls on the app route, by family.
    let request_calls = |family: &str, plugin: &str| {
        sum(
            &samples,
            family,
            &[("plugin", plugin), ("route", "app"), ("hook", "request")],
        )
    };
    assert_eq!(
        request_calls("flyio_nginx_plugin_calls_total", "header-rewrite"),
        5.0
    );
    assert_eq!(
        request_calls(
            "flyio_nginx_plugin_call_duration_seconds_count",
            "header-rewrite"
        ),
        5.0
    );
    // rate-limit's per-client limit is checked by the host before its hook
    // (`request-checks`): five requests within the rate never enter it, and
    // are counted as passed all the same.
    assert_eq!(
        request_calls("flyio_nginx_plugin_calls_total", "rate-limit"),
        0.0
    );
    assert_eq!(
        sum(
            &samples,
            "flyio_nginx_plugin_ratelimit_requests",
            &[
                ("zone", "per_ip"),
                ("outcome", "passed"),
                ("plugin", "rate-limit")
            ]
        ),
        5.0,
        "rate-limit outcomes: {:#?}",
        matching(&samples, "flyio_nginx_plugin_ratelimit_requests", &[])
    );
    // No series escapes the prefix.
    assert!(
        samples.iter().all(|s| !s.name.starts_with("tailgate_")),
        "{:?}",
        samples.iter().find(|s| s.name.starts_with("tailgate_"))
    );

    // /metrics is the text format; /healthz lives beside it.
    let reply = get(admin, "localhost", "/metrics").await;
    assert!(reply
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
    let text = reply.text();
    assert!(
        text.contains("# TYPE flyio_nginx_http_requests_total counter"),
        "{text}"
    );
    assert!(text.contains("# TYPE flyio_nginx_http_request_duration_seconds histogram"));
    let health = get(admin, "localhost", "/healthz").await;
    assert_eq!(health.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_telemetry_config_the_names_start_with_tailgate() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&up, ""));
    assert_eq!(get(tg.addr(), "app.test", "/").await.status, 200);
    tg.wait_log("http_host", "app.test");
    let text = scrape_text(tg.admin_addr()).await;
    assert!(text.contains("tailgate_http_requests_total{"), "{text}");
    assert!(text.contains("tailgate_http_request_duration_seconds_bucket{"));
    assert!(
        !text.contains("instance="),
        "no constant labels unless configured"
    );
}
