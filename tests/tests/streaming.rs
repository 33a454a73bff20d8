//! Bodies through the real binary: a 100 MB upload streams with bounded proxy
//! memory, the per-route body limit answers 413, and a WebSocket echoes.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::StreamBody;
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tailgate_e2e::base_config;
use tailgate_e2e::client::send;
use tailgate_e2e::process::Tailgate;
use tailgate_e2e::upstream::TestUpstream;
use tokio_tungstenite::tungstenite::Message;

fn config(up: &TestUpstream) -> String {
    base_config("")
        + &format!(
            r#"
[upstreams.app]
url = "{}"

[[routes]]
name = "big"
hosts = ["app.test"]
path = "/"
upstream = "app"
max_body_size = "200MiB"

[[routes]]
name = "small"
hosts = ["small.test"]
path = "/"
upstream = "app"
max_body_size = "1KiB"
"#,
            up.url()
        )
}

/// A chunked request body of `total` bytes, produced lazily in 64 KiB chunks.
fn lazy_body(
    total: usize,
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>>> {
    let chunk = Bytes::from(vec![b'u'; 64 * 1024]);
    let n = total / chunk.len();
    StreamBody::new(futures_util::stream::iter(
        (0..n).map(move |_| Ok(Frame::data(chunk.clone()))),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_100_mb_upload_streams_with_bounded_memory() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&up));
    let before = tg.rss();
    let total = 100 * 1024 * 1024;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::post(format!("{}/upload", tg.url()))
        .header("host", "app.test")
        .body(lazy_body(total))
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(120), client.request(req))
        .await
        .expect("upload finished in time")
        .expect("upload response");
    assert_eq!(resp.status(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(String::from_utf8_lossy(&body), total.to_string());
    let peak = tg.peak_rss();
    assert!(
        peak < before + 40 * 1024 * 1024,
        "proxy peak RSS grew from {before} to {peak} bytes for a 100 MB upload: the body was buffered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_the_route_limit_get_413() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&up));
    // Declared length over the limit.
    let r = send(
        tg.addr(),
        http::Method::POST,
        "small.test",
        "/upload",
        &[],
        vec![b'a'; 4096],
    )
    .await
    .expect("post");
    assert_eq!(r.status, 413);
    // Chunked (no length) over the limit: counted while streaming.
    let client = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::post(format!("{}/upload", tg.url()))
        .header("host", "small.test")
        .body(lazy_body(256 * 1024))
        .expect("request");
    let resp = client.request(req).await;
    if let Ok(resp) = resp {
        assert_eq!(resp.status(), 413);
    }
    // Under the limit passes.
    let r = send(
        tg.addr(),
        http::Method::POST,
        "small.test",
        "/upload",
        &[],
        vec![b'a'; 512],
    )
    .await
    .expect("post");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "512");
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_echo_through_the_proxy() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&up));
    let stream = tokio::net::TcpStream::connect(tg.addr())
        .await
        .expect("connect");
    let req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        "ws://app.test/ws",
    )
    .expect("ws request");
    let (mut ws, resp) = tokio_tungstenite::client_async(req, stream)
        .await
        .expect("ws handshake through proxy");
    assert_eq!(resp.status(), 101);
    for i in 0..5 {
        ws.send(Message::text(format!("hello {i}")))
            .await
            .expect("send");
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo in time")
            .expect("message")
            .expect("ok");
        assert_eq!(
            msg.into_text().expect("text").as_str(),
            format!("hello {i}")
        );
    }
    ws.close(None).await.expect("close");
    let rec = tg.wait_log("request_uri", "/ws");
    assert_eq!(rec["status"].as_u64(), Some(101));
}
