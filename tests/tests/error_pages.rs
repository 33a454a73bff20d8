//! A route's error pages through the real binary, beyond the upstream's
//! failures (those are in `upstream_failures.rs`): `error_pages_for`
//! dressing a plugin's answer (a rate-limit rejection) with the page while
//! its status and `Retry-After` stay, the proxy's own refusals (413) dressed
//! under `bodiless`, today's behaviour kept by default, and an `internal`
//! page path answered 404 without reaching the upstream.

use bytes::Bytes;
use http::Method;
use tailgate_e2e::base_config;
use tailgate_e2e::client::{get, raw_exchange, send, Reply};
use tailgate_e2e::process::{Tailgate, TempDir};
use tailgate_e2e::upstream::TestUpstream;

const PAGE: &str = "<h1>Slow down, we are busy</h1>\n";
const NOT_FOUND_PAGE: &str = "<h1>Nothing here</h1>\n";

/// A route for host `{host}.test` to the upstream `app`, with a rate limit of one request a
/// minute (its own zone) whose rejection is 503, and the 503 page; `body`
/// is the rejection's body setting (TOML line), `extra` more route keys.
fn limited_route(page: &str, host: &str, extra: &str, body: &str) -> String {
    format!(
        r#"
[[routes]]
name = "{host}"
hosts = ["{host}.test"]
path = "/"
upstream = "app"
error_pages = {{ 503 = "{page}" }}
{extra}

[[routes.plugins]]
plugin = "rate-limit"
[routes.plugins.config]
status = 503
{body}
limits = [{{ zone = "{host}", rate = "1r/m" }}]
"#
    )
}

/// The first request passes; the second is the limit's rejection.
async fn rejection(tg: &Tailgate, host: &str) -> Reply {
    let first = get(tg.addr(), host, "/").await;
    assert_eq!(first.status, 200, "{host}: {}", first.text());
    let second = get(tg.addr(), host, "/").await;
    assert_eq!(second.status, 503, "{host}: {}", second.text());
    assert!(
        second.header("retry-after").is_some(),
        "{host}: the plugin's Retry-After stays: {:?}",
        second.headers
    );
    second
}

#[tokio::test(flavor = "multi_thread")]
async fn error_pages_dress_plugin_answers_and_refusals_as_the_route_says() {
    let up = TestUpstream::start();
    let dir = TempDir::new("error-pages");
    let page = dir.write("50x.html", PAGE);
    let page = page.display();
    let config = base_config("")
        + &format!("\n[upstreams.app]\nurl = \"{}\"\n", up.url())
        + &limited_route(&page.to_string(), "default", "", "")
        + &limited_route(
            &page.to_string(),
            "bodiless",
            r#"error_pages_for = "bodiless""#,
            r#"body = """#,
        )
        + &limited_route(
            &page.to_string(),
            "bodied",
            r#"error_pages_for = "bodiless""#,
            r#"body = "Too busy\n""#,
        )
        + &limited_route(&page.to_string(), "all", r#"error_pages_for = "all""#, "");
    let tg = Tailgate::start(&config);

    // Default: the plugin's answer is its own, as before.
    let r = rejection(&tg, "default.test").await;
    assert_eq!(r.text(), "Service Unavailable\n");
    assert_ne!(
        r.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );

    // `bodiless`: an answer without a body gets the page ...
    let r = rejection(&tg, "bodiless.test").await;
    assert_eq!(r.text(), PAGE);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        r.header("content-length").as_deref(),
        Some(&*PAGE.len().to_string())
    );
    // ... one with a body keeps it.
    let r = rejection(&tg, "bodied.test").await;
    assert_eq!(r.text(), "Too busy\n");

    // `all`: every plugin answer with a page's status gets it.
    let r = rejection(&tg, "all.test").await;
    assert_eq!(r.text(), PAGE);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
}

/// Routes `paged.test` (`bodiless`) and `plain.test` (default) to `up`, each
/// with pages for 404 and 413, a body limit of 16 bytes and `/50x.html`
/// internal.
fn internal_config(up: &TestUpstream, dir: &TempDir) -> String {
    let page = dir.write("50x.html", PAGE);
    let not_found = dir.write("404.html", NOT_FOUND_PAGE);
    let route = |name: &str, extra: &str| {
        format!(
            r#"
[[routes]]
name = "{name}"
hosts = ["{name}.test"]
path = "/"
upstream = "app"
max_body_size = 16
error_pages = {{ 404 = "{not_found}", 413 = "{page}", 503 = "{page}" }}
internal = ["/50x.html"]
{extra}
"#,
            not_found = not_found.display(),
            page = page.display(),
        )
    };
    base_config("")
        + &format!("\n[upstreams.app]\nurl = \"{}\"\n", up.url())
        + &route("paged", r#"error_pages_for = "bodiless""#)
        + &route("plain", "")
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_page_paths_are_404_and_refusals_get_pages_under_bodiless() {
    let up = TestUpstream::start();
    let dir = TempDir::new("internal-pages");
    let tg = Tailgate::start(&internal_config(&up, &dir));

    // nginx `internal`: a direct request for the page's path is 404 and
    // never reaches the upstream; the route's 404 page dresses it under
    // `bodiless`, the plain status text otherwise.
    let before = up.requests();
    let r = get(tg.addr(), "paged.test", "/50x.html").await;
    assert_eq!(
        (r.status.as_u16(), r.text()),
        (404, NOT_FOUND_PAGE.to_owned())
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    let r = get(tg.addr(), "plain.test", "/50x.html").await;
    assert_eq!(
        (r.status.as_u16(), r.text()),
        (404, "404 Not Found\n".to_owned())
    );
    // Spelled otherwise, it is the same path once normalised.
    for target in ["/%350x.html", "//50x.html", "/x/../50x.html"] {
        let raw = raw_exchange(
            tg.addr(),
            format!("GET {target} HTTP/1.1\r\nHost: plain.test\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("exchange");
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 404 "), "{target}: {text}");
    }
    assert_eq!(
        up.requests(),
        before,
        "an internal path never goes upstream"
    );
    // Logged as the route's, like every answer.
    let line = tg.wait_log("route", "plain");
    assert_eq!(
        (line["request_uri"].as_str(), &line["status"]),
        (Some("/50x.html"), &404.into())
    );

    // Other paths of the route still go upstream.
    let r = get(tg.addr(), "paged.test", "/50x.htmlx").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.requests(), before + 1);

    // The proxy's own refusal (a body over `max_body_size`): the page under
    // `bodiless`, the plain status text by default.
    let big = Bytes::from(vec![b'x'; 64]);
    let r = send(
        tg.addr(),
        Method::POST,
        "paged.test",
        "/upload",
        &[],
        big.clone(),
    )
    .await
    .expect("POST");
    assert_eq!((r.status.as_u16(), r.text()), (413, PAGE.to_owned()));
    let r = send(tg.addr(), Method::POST, "plain.test", "/upload", &[], big)
        .await
        .expect("POST");
    assert_eq!(
        (r.status.as_u16(), r.text()),
        (413, "413 Payload Too Large\n".to_owned())
    );
}
