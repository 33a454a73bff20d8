//! Routing through the real binary: Host (exact, wildcard, catch-all,
//! unknown-host status or close) and path (exact, regex in order, longest prefix).

use tailgate_e2e::base_config;
use tailgate_e2e::client::{get, raw_exchange};
use tailgate_e2e::process::Tailgate;
use tailgate_e2e::upstream::TestUpstream;

fn routes(up: &TestUpstream) -> String {
    let u = up.url();
    format!(
        r#"
[upstreams.a]
url = "{u}"
[upstreams.b]
url = "{u}/b-prefix"

[[routes]]
name = "exact-host-prefix"
hosts = ["app.example.com"]
path = "/"
upstream = "a"

[[routes]]
name = "exact-host-longer-prefix"
hosts = ["app.example.com"]
path = "/api/"
upstream = "a"

[[routes]]
name = "exact-path"
hosts = ["app.example.com"]
path_exact = "/api/login"
upstream = "a"

[[routes]]
name = "regex-first"
hosts = ["app.example.com"]
path_regex = "\\.(png|jpg)$"
upstream = "a"

[[routes]]
name = "regex-second"
hosts = ["app.example.com"]
path_regex = "^/api/.*\\.png$"
upstream = "a"

[[routes]]
name = "wildcard"
hosts = ["*.example.com"]
path = "/"
upstream = "b"

[[routes]]
name = "wildcard-longer"
hosts = ["*.deep.example.com"]
path = "/"
upstream = "a"

[[routes]]
name = "only-static"
hosts = ["noroot.example.com"]
path = "/static/"
upstream = "a"
"#
    )
}

async fn route_of(tg: &Tailgate, host: &str, path: &str) -> (u16, String) {
    let r = get(tg.addr(), host, path).await;
    let id = r.header("x-request-id").unwrap_or_default();
    let _ = id;
    let rec = tg.wait_log("request_uri", path);
    (
        r.status.as_u16(),
        rec["route"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn host_and_path_routing_follow_nginx_rules() {
    let up = TestUpstream::start();
    let cfg = base_config("unknown_host = { action = \"status\", status = 421 }") + &routes(&up);
    let tg = Tailgate::start(&cfg);

    // Longest prefix wins; exact beats prefix; the first regex in config order beats prefixes.
    assert_eq!(
        route_of(&tg, "app.example.com", "/x").await,
        (200, "exact-host-prefix".into())
    );
    assert_eq!(
        route_of(&tg, "app.example.com", "/api/users").await,
        (200, "exact-host-longer-prefix".into())
    );
    assert_eq!(
        route_of(&tg, "app.example.com", "/api/login").await,
        (200, "exact-path".into())
    );
    assert_eq!(
        route_of(&tg, "app.example.com", "/api/logo.png").await,
        (200, "regex-first".into())
    );
    // Host matching is case-insensitive and ignores the port.
    assert_eq!(
        route_of(&tg, "APP.example.com:8443", "/y").await,
        (200, "exact-host-prefix".into())
    );
    // Wildcards: the longest suffix wins; exact beats wildcard.
    assert_eq!(
        route_of(&tg, "docs.example.com", "/w").await,
        (200, "wildcard".into())
    );
    assert_eq!(
        route_of(&tg, "a.deep.example.com", "/d").await,
        (200, "wildcard-longer".into())
    );

    // The upstream URL's path is prefixed.
    let r = get(tg.addr(), "docs.example.com", "/page?q=1").await;
    assert_eq!(r.json()["uri"], "/b-prefix/page?q=1");

    // Known host, no matching path: 404. Unknown host: the configured status.
    assert_eq!(
        get(tg.addr(), "noroot.example.com", "/other").await.status,
        404
    );
    assert_eq!(get(tg.addr(), "unknown.test", "/").await.status, 421);
    let rec = tg.wait_log("http_host", "unknown.test");
    assert_eq!(rec["status"].as_u64(), Some(421));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_host_close_drops_the_connection_without_a_response() {
    let up = TestUpstream::start();
    let cfg = base_config("unknown_host = { action = \"close\" }") + &routes(&up);
    let tg = Tailgate::start(&cfg);
    let out = raw_exchange(tg.addr(), b"GET / HTTP/1.1\r\nHost: nobody.test\r\n\r\n")
        .await
        .expect("connect");
    assert!(
        out.is_empty(),
        "expected no response bytes, got {:?}",
        String::from_utf8_lossy(&out)
    );
    // A known host on a new connection is still served.
    assert_eq!(get(tg.addr(), "app.example.com", "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_answers_on_the_main_listener() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&(base_config("") + &routes(&up)));
    let r = get(tg.addr(), "whatever.test", "/healthz").await;
    assert_eq!(r.status, 200);
    assert_eq!(up.requests(), 0, "healthz must not reach an upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_prior_knowledge_is_served() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&(base_config("") + &routes(&up)));
    let r = tailgate_e2e::client::send_on(
        true,
        tg.addr(),
        http::Method::GET,
        "app.example.com",
        "/h2",
        &[],
        bytes::Bytes::new(),
    )
    .await
    .expect("h2c request");
    assert_eq!(r.status, 200);
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(r.json()["uri"], "/h2");
}
