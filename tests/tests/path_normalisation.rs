//! One normalised path for every phase, through the real binary: the
//! spellings that got past a deny rule or a login rate limit (`//swagger`,
//! `/%73wagger`, `/a/../swagger`, `/user/%6cogin`) are the same path to
//! routing, plugins and the upstream; a path above `/` is a 400; the static
//! upstream's folder redirect is never protocol-relative.

use std::net::SocketAddr;

use tailgate_e2e::client::raw_exchange;
use tailgate_e2e::process::{Tailgate, TempDir};
use tailgate_e2e::upstream::TestUpstream;
use tailgate_e2e::{app_route, base_config};

/// Send `GET target` as raw bytes (no client library tidies the path) and
/// return the status and the raw head and body.
async fn get_raw(addr: SocketAddr, target: &str) -> (u16, String) {
    let request = format!("GET {target} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
    let bytes = raw_exchange(addr, request.as_bytes())
        .await
        .expect("exchange");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line for {target}: {text:?}"));
    (status, text)
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response.split("\r\n\r\n").next()?.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn guarded_app(up: &TestUpstream) -> String {
    base_config("")
        + &app_route(&up.url())
        + r#"
[[routes.plugins]]
plugin = "rate-limit"
[routes.plugins.config]
limits = [{ zone = "login", rate = "1r/m", burst = 2, nodelay = true, path = "^/user/login$" }]

[[routes.plugins]]
plugin = "header-rewrite"
[routes.plugins.config]
deny = [{ path = "^/swagger", status = 403, body = "Forbidden\n" }]
"#
}

#[tokio::test(flavor = "multi_thread")]
async fn every_spelling_of_a_denied_path_is_denied_and_never_reaches_the_upstream() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&guarded_app(&up));
    for target in [
        "/swagger",
        "//swagger",
        "/%73wagger",
        "/%73%77%61%67%67%65%72/index.html",
        "/a/../swagger",
        "/./swagger",
        "/x/%2e%2e/swagger/",
        "///swagger?x=1",
    ] {
        let (status, text) = get_raw(tg.addr(), target).await;
        assert_eq!(status, 403, "{target}: {text}");
    }
    assert_eq!(up.requests(), 0, "a denied spelling reached the upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_limit_counts_every_spelling_of_the_login_path() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&guarded_app(&up));
    // 1 r/m with a burst of 2: three pass, the fourth is rejected, whatever
    // the spelling.
    let mut statuses = Vec::new();
    for target in [
        "/user/login",
        "//user/login",
        "/user/%6cogin",
        "/user//login",
    ] {
        statuses.push(get_raw(tg.addr(), target).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upstream_gets_the_normalised_path_and_the_log_the_received_one() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&(base_config("") + &app_route(&up.url())));
    let (status, text) = get_raw(tg.addr(), "/a/./b/../c%2fd/%7euser?x=/../y").await;
    assert_eq!(status, 200, "{text}");
    let body = text.split("\r\n\r\n").nth(1).expect("body");
    let echoed: serde_json::Value = serde_json::from_str(body).expect("echo json");
    // `%2F` stays escaped (it is not a separator), `%7e` is `~`; the query
    // is not touched.
    assert_eq!(echoed["uri"], "/a/c%2Fd/~user?x=/../y");
    let line = tg.wait_log("request_uri", "/a/./b/../c%2fd/%7euser?x=/../y");
    assert_eq!(line["status"], 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_above_the_root_and_malformed_escapes_are_400_and_never_forwarded() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&(base_config("") + &app_route(&up.url())));
    for target in ["/..", "/a/../../etc/passwd", "/%2e%2e/x", "/a%zz", "/a%00b"] {
        let (status, text) = get_raw(tg.addr(), target).await;
        assert_eq!(status, 400, "{target}: {text}");
    }
    assert_eq!(up.requests(), 0);
    let line = tg.wait_log("request_uri", "/a/../../etc/passwd");
    assert_eq!(line["status"], 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_static_folder_redirect_is_never_protocol_relative() {
    let dir = TempDir::new("static-redirect");
    dir.write("www/evil.example/index.html", "inside");
    let config = base_config("")
        + &format!(
            r#"
[upstreams.files]
static = "{root}/www"

[[routes]]
name = "files"
hosts = ["app.test"]
path = "/"
upstream = "files"
"#,
            root = dir.path().display()
        );
    let tg = Tailgate::start(&config);
    for target in ["//evil.example", "///evil.example", "/evil.example"] {
        let (status, text) = get_raw(tg.addr(), target).await;
        assert_eq!(status, 301, "{target}: {text}");
        let location = header(&text, "location").expect("location");
        assert!(
            location.starts_with('/') && !location.starts_with("//"),
            "{target}: open redirect to {location:?}"
        );
        assert_eq!(location, "/evil.example/");
    }
}
