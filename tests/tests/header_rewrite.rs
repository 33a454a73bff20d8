//! The header-rewrite plugin through the real binary: request and response
//! edits with placeholders, `always` on host-made error responses, deny and
//! redirect rules.

use tailgate_e2e::base_config;
use tailgate_e2e::client::{get, get_with, send, send_on};
use tailgate_e2e::process::Tailgate;
use tailgate_e2e::upstream::{dead_upstream, TestUpstream};

fn config(up: &TestUpstream, always: bool) -> String {
    let dead = dead_upstream();
    base_config("")
        + &format!(
            r#"
[upstreams.app]
url = "{up}"
[upstreams.dead]
url = "http://{dead}"

[[routes]]
name = "app"
hosts = ["app.test"]
path = "/"
upstream = "app"
[[routes.plugins]]
plugin = "header-rewrite"
[routes.plugins.config]
request.set = {{ "X-Client" = "{{client_ip}}", "X-Orig" = "{{scheme}}://{{host}}{{uri}}", "X-UA" = "ua={{http_user_agent}}" }}
request.append = {{ "X-Multi" = "two", "X-Client" = "via-tailgate" }}
request.remove = ["X-Secret"]
response.set = {{ "X-Frame-Options" = "DENY", "X-Req" = "{{request_id}}" }}
response.append = {{ "Vary" = "Accept-Encoding" }}
response.remove = ["Server"]
response.always = {always}
deny = [
  {{ path = "^/swagger", status = 403, body = "Swagger is not public\n" }},
  {{ methods = ["TRACE", "DELETE"], status = 405, body = "no\n" }},
]
redirect = [
  {{ path = "^/old/(.*)$", status = 301, location = "https://{{host}}/new/$1" }},
  {{ path = "^/moved/(.*)$", status = 302, location = "{{scheme}}://{{http_host}}/$1" }},
]

[[routes]]
name = "dead"
hosts = ["dead.test"]
path = "/"
upstream = "dead"
[[routes.plugins]]
plugin = "header-rewrite"
[routes.plugins.config]
response.set = {{ "X-Frame-Options" = "DENY" }}
response.always = {always}
"#,
            up = up.url()
        )
}

#[tokio::test(flavor = "multi_thread")]
async fn request_headers_are_set_appended_and_removed_with_placeholders() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&up, false));
    let r = get_with(
        tg.addr(),
        "app.test",
        "/path?x=1",
        &[
            ("x-secret", "s3cr3t"),
            ("x-multi", "one"),
            ("user-agent", "curl/8"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    // The constant append of X-Client follows its templated set (the
    // constants the host makes itself may not overtake it).
    assert_eq!(
        r.echoed_headers("x-client"),
        vec!["127.0.0.1", "via-tailgate"]
    );
    assert_eq!(
        r.echoed_header("x-orig").as_deref(),
        Some("http://app.test/path?x=1")
    );
    assert_eq!(r.echoed_header("x-ua").as_deref(), Some("ua=curl/8"));
    assert_eq!(r.echoed_headers("x-multi"), vec!["one", "two"]);
    assert_eq!(r.echoed_header("x-secret"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn response_headers_are_edited_and_request_id_matches() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&up, false));
    let r = get(tg.addr(), "app.test", "/r").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(
        r.header("server"),
        None,
        "upstream's Server header must be removed"
    );
    let req_id = r.header("x-req").expect("x-req set from {request_id}");
    assert_eq!(
        r.echoed_header("x-request-id").as_deref(),
        Some(req_id.as_str())
    );
    let rec = tg.wait_log("request_uri", "/r");
    assert_eq!(rec["request_id"].as_str(), Some(req_id.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn error_responses_get_response_edits_only_with_always() {
    let up = TestUpstream::start();
    let without = Tailgate::start(&config(&up, false));
    let r = get(without.addr(), "dead.test", "/").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-frame-options"), None);

    let with = Tailgate::start(&config(&up, true));
    let r = get(with.addr(), "dead.test", "/").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-frame-options").as_deref(), Some("DENY"));
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_rules_answer_without_reaching_the_upstream() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&up, false));
    let r = get(tg.addr(), "app.test", "/swagger/index.html").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "Swagger is not public\n");
    let r = send(
        tg.addr(),
        http::Method::DELETE,
        "app.test",
        "/thing",
        &[],
        "",
    )
    .await
    .expect("delete");
    assert_eq!(r.status, 405);
    assert_eq!(up.requests(), 0);
    // Denied requests are logged too.
    let rec = tg.wait_log("request_uri", "/swagger/index.html");
    assert_eq!(rec["status"].as_u64(), Some(403));
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_rules_build_location_from_placeholders_and_captures() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&up, false));
    let r = get(tg.addr(), "app.test", "/old/docs/page").await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location").as_deref(),
        Some("https://app.test/new/docs/page")
    );
    assert_eq!(up.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_to_http_host_keeps_the_port_the_client_used() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&up, false));
    let port = tg.addr().port();
    assert_ne!(port, 80);
    let host = format!("app.test:{port}");
    let expected = format!("http://app.test:{port}/docs/page");
    // HTTP/1.1 sends the port in Host; HTTP/2 in :authority.
    for h2c in [false, true] {
        let r = send_on(
            h2c,
            tg.addr(),
            http::Method::GET,
            &host,
            "/moved/docs/page",
            &[],
            bytes::Bytes::new(),
        )
        .await
        .expect("redirect");
        assert_eq!(r.status, 302, "h2c: {h2c}");
        assert_eq!(
            r.header("location").as_deref(),
            Some(expected.as_str()),
            "h2c: {h2c}"
        );
    }
    // `{host}` is nginx's `$host`: the same request loses the port.
    let r = get(tg.addr(), &host, "/old/docs/page").await;
    assert_eq!(
        r.header("location").as_deref(),
        Some("https://app.test/new/docs/page")
    );
    assert_eq!(up.requests(), 0);
}
