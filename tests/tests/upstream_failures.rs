//! Upstream failures through the real binary: 502 on a refused connection,
//! 504 on a response timeout, and per-route error pages (nginx `error_page`
//! with `proxy_intercept_errors`).

use std::time::{Duration, Instant};

use tailgate_e2e::base_config;
use tailgate_e2e::client::get;
use tailgate_e2e::process::{Tailgate, TempDir};
use tailgate_e2e::upstream::{dead_upstream, silent_upstream, TestUpstream};

fn config(dir: &TempDir, up: &TestUpstream) -> String {
    let page = dir.write("50x.html", "<h1>We'll be right back</h1>\n");
    let dead = dead_upstream();
    let silent = silent_upstream();
    base_config("")
        + &format!(
            r#"
[upstreams.dead]
url = "http://{dead}"
[upstreams.silent]
url = "http://{silent}"
response_timeout = "500ms"
[upstreams.live]
url = "{live}"

[[routes]]
name = "dead"
hosts = ["dead.test"]
path = "/"
upstream = "dead"

[[routes]]
name = "silent"
hosts = ["silent.test"]
path = "/"
upstream = "silent"

[[routes]]
name = "paged"
hosts = ["paged.test"]
path = "/"
upstream = "dead"
error_pages = {{ 502 = "{page}", 503 = "{page}", 504 = "{page}" }}

[[routes]]
name = "intercept"
hosts = ["live.test"]
path = "/"
upstream = "live"
error_pages = {{ 503 = "{page}" }}
"#,
            page = page.display(),
            live = up.url()
        )
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_connection_is_502_and_response_timeout_is_504() {
    let dir = TempDir::new("fail");
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&dir, &up));
    assert_eq!(get(tg.addr(), "dead.test", "/").await.status, 502);
    let t = Instant::now();
    assert_eq!(get(tg.addr(), "silent.test", "/").await.status, 504);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(5),
        "504 after {took:?}"
    );
    let rec = tg.wait_log("http_host", "silent.test");
    assert_eq!(rec["status"].as_u64(), Some(504));
    // The proxy still serves.
    assert_eq!(get(tg.addr(), "live.test", "/ok").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn error_page_is_served_for_a_dead_upstream_and_intercepted_statuses() {
    let dir = TempDir::new("fail");
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&dir, &up));
    let r = get(tg.addr(), "paged.test", "/anything").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), "<h1>We'll be right back</h1>\n");
    assert!(r
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/html"));
    // An upstream 503 is replaced by the page; other statuses pass through.
    let r = get(tg.addr(), "live.test", "/status/503").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "<h1>We'll be right back</h1>\n");
    let r = get(tg.addr(), "live.test", "/status/500").await;
    assert_eq!(r.status, 500);
    assert_eq!(r.text(), "status 500");
}
