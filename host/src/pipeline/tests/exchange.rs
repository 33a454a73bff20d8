//! Proxied exchanges: forwarding headers, body limits, upstream failures and
//! error pages, static files, and when the log line is written.

use super::*;

// === forwarding ===

#[tokio::test]
async fn request_is_forwarded_with_prefix_and_forwarding_headers() {
    let up = echo_upstream().await;
    let mut h = harness(&config(up, "", ""), vec![]);
    let req = Request::get("/p/q?x=1")
        .header("host", "App.Test:8080")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-request-id", "spoofed")
        .header("connection", "x-hop-req")
        .header("x-hop-req", "1")
        .header("te", "trailers")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let a = h.send(req).await;
    assert_eq!(a.status, StatusCode::OK);
    let echoed = a.json();
    assert_eq!(echoed["uri"], "/base/p/q?x=1");
    assert_eq!(a.echoed("x-forwarded-for").as_deref(), Some("203.0.113.9"));
    assert_eq!(a.echoed("x-real-ip").as_deref(), Some("203.0.113.9"));
    assert_eq!(a.echoed("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        a.echoed("host").as_deref(),
        Some("App.Test:8080"),
        "the client's Host by default"
    );
    assert_eq!(a.echoed("x-hop-req"), None);
    assert_eq!(a.echoed("te"), None);
    let id = a.echoed("x-request-id").expect("request id");
    assert_ne!(id, "spoofed");
    // Response hop-by-hop fields are gone, end-to-end ones stay.
    assert!(!a.headers.contains_key("x-hop"));
    assert!(!a.headers.contains_key("keep-alive"));
    assert!(!a.headers.contains_key("connection"));
    assert_eq!(a.headers["x-end"], "kept");

    let rec = h.next_log().await;
    assert_eq!(rec["request_id"], id.as_str());
    assert_eq!(rec["route"], "app");
    assert_eq!(rec["request_uri"], "/p/q?x=1");
    assert_eq!(rec["http_host"], "app.test");
    assert_eq!(rec["status"], 200);
    assert_eq!(rec["body_bytes_sent"], a.body.len() as u64);
    assert_eq!(rec["upstream_addr"], up.to_string());
    assert!(rec["upstream_response_time"].is_number());
    assert_eq!(rec["http_user_agent"], "");
    assert_eq!(rec["client_ip"], "203.0.113.9");
}

#[tokio::test]
async fn upstream_host_header_mode_sends_the_upstreams_authority() {
    let up = echo_upstream().await;
    let cfg = config(up, "", "").replace(
        &format!("url = \"http://{up}/base\""),
        &format!("url = \"http://{up}/base\"\nhost_header = \"upstream\""),
    );
    let h = harness(&cfg, vec![]);
    let a = h.get("app.test:8443", "/").await;
    assert_eq!(a.echoed("host"), Some(up.to_string()));
}

#[tokio::test]
async fn a_fixed_host_header_is_sent_whatever_the_client_asked_for() {
    let up = echo_upstream().await;
    let cfg = config(up, "", "").replace(
        &format!("url = \"http://{up}/base\""),
        &format!("url = \"http://{up}/base\"\nhost_header = {{ set = \"origin.internal:8081\" }}"),
    );
    let h = harness(&cfg, vec![]);
    let a = h.get("app.test:8443", "/").await;
    assert_eq!(a.echoed("host").as_deref(), Some("origin.internal:8081"));
}

// === bodies ===

#[tokio::test]
async fn declared_body_over_the_limit_is_413_without_reaching_upstream() {
    let up = echo_upstream().await;
    let mut h = harness(&config(up, "", ""), vec![]);
    let req = Request::post("/upload")
        .header("host", "app.test")
        .header("content-length", "4096")
        .body(Full::new(Bytes::from(vec![b'a'; 4096])))
        .expect("request");
    let a = h.send(req).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(h.next_log().await["upstream_addr"].is_null());
}

fn chunked(
    n: usize,
    chunk: usize,
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>>> {
    let data = Bytes::from(vec![b'c'; chunk]);
    StreamBody::new(stream::iter(
        (0..n).map(move |_| Ok(Frame::data(data.clone()))),
    ))
}

#[tokio::test]
async fn streamed_body_over_the_limit_is_413_and_under_it_passes() {
    let up = echo_upstream().await;
    let mut h = harness(&config(up, "", ""), vec![]);
    let req = Request::post("/upload")
        .header("host", "app.test")
        .body(chunked(16, 256))
        .expect("request");
    assert_eq!(h.send(req).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    let _ = h.next_log().await;

    let req = Request::post("/upload")
        .header("host", "app.test")
        .body(chunked(3, 256))
        .expect("request");
    let a = h.send(req).await;
    assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"768"[..]));
    assert_eq!(h.next_log().await["request_length"], 768);
}

// === upstream failures and error pages ===

#[tokio::test]
async fn dead_upstream_is_502_and_error_pages_replace_it() {
    let up = echo_upstream().await;
    let routes = r#"
[[routes]]
name = "dead"
hosts = ["dead.test"]
path = "/"
upstream = "dead"

[[routes]]
name = "paged"
hosts = ["paged.test"]
path = "/"
upstream = "dead"
error_pages = { 502 = "50x.html" }

[[routes]]
name = "intercept"
hosts = ["intercept.test"]
path = "/"
upstream = "echo"
error_pages = { 503 = "50x.html" }
"#;
    let mut h = harness(&config(up, "", routes), vec![]);
    let a = h.get("dead.test", "/").await;
    assert_eq!(
        (a.status, &a.body[..]),
        (StatusCode::BAD_GATEWAY, &b"502 Bad Gateway\n"[..])
    );
    assert_eq!(h.next_log().await["status"], 502);

    let a = h.get("paged.test", "/").await;
    assert_eq!(
        (a.status, &a.body[..]),
        (StatusCode::BAD_GATEWAY, &b"<p>back soon</p>"[..])
    );
    assert_eq!(a.headers["content-type"], "text/html; charset=utf-8");
    let _ = h.next_log().await;

    let a = h.get("intercept.test", "/status/503").await;
    assert_eq!(
        (a.status, &a.body[..]),
        (StatusCode::SERVICE_UNAVAILABLE, &b"<p>back soon</p>"[..])
    );
    let a = h.get("intercept.test", "/status/500").await;
    assert_eq!(
        (a.status, &a.body[..]),
        (StatusCode::INTERNAL_SERVER_ERROR, &b"status 500"[..])
    );
}

#[tokio::test]
async fn static_upstream_serves_files_through_the_pipeline() {
    let up = echo_upstream().await;
    let routes = r#"
[[routes]]
name = "site"
hosts = ["site.test"]
path = "/"
upstream = "files"
"#;
    let mut h = harness(&config(up, "", routes), vec![]);
    let a = h.get("site.test", "/").await;
    assert_eq!(
        (a.status, &a.body[..]),
        (StatusCode::OK, &b"<h1>home</h1>"[..])
    );
    let rec = h.next_log().await;
    assert_eq!(rec["body_bytes_sent"], 13);
    // A path above the root never reaches the folder: 400 (request_path).
    assert_eq!(
        h.get("site.test", "/../config.toml").await.status,
        StatusCode::BAD_REQUEST
    );
}

// === the log fires when the body ends ===

#[tokio::test]
async fn log_line_waits_for_the_body_to_finish() {
    let up = echo_upstream().await;
    let mut h = harness(&config(up, "", ""), vec![]);
    let peer: SocketAddr = CLIENT.parse().expect("peer");
    let resp = h
        .proxy
        .handle(request("app.test", "/x"), peer)
        .await
        .expect("response");
    h.no_line().await; // none before the body is sent
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let rec = h.next_log().await;
    assert_eq!(rec["body_bytes_sent"], body.len() as u64);

    // A response dropped unread (client went away) is logged too.
    let resp = h
        .proxy
        .handle(request("app.test", "/y"), peer)
        .await
        .expect("response");
    drop(resp);
    assert_eq!(h.next_log().await["request_uri"], "/y");
}
