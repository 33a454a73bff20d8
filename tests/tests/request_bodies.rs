//! Request bodies through the real binary, with request buffering (nginx
//! `proxy_request_buffering on`, the default): a chunked body over
//! `max_body_size` is a 413 the upstream never sees, even from an upstream
//! that answers without reading; a malformed chunk is the client's 400 and a
//! client gone mid-body its 499, neither counted against the upstream; slow
//! uploads hold no upstream connection; a body past the memory threshold
//! goes through a temporary file intact; `request_buffering = false` streams.

use std::net::SocketAddr;
use std::time::Duration;

use tailgate_e2e::client::raw_exchange;
use tailgate_e2e::process::Tailgate;
use tailgate_e2e::upstream::TestUpstream;
use tailgate_e2e::{app_route, base_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(up: &TestUpstream, route_keys: &str) -> String {
    base_config("") + &app_route(&up.url()) + "max_body_size = \"64KiB\"\n" + route_keys
}

fn status(response: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(response);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"))
}

/// A chunked request whose body is `chunks` chunks of 16 KiB.
fn chunked_request(path: &str, chunks: usize) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..chunks {
        req.extend_from_slice(b"4000\r\n");
        req.extend_from_slice(&[b'x'; 0x4000]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    req
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_body_over_the_limit_is_413_and_never_reaches_the_upstream() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&up, ""));
    // To the upload counter, and to an upstream path that answers without
    // reading the body (which let the request through with a 200).
    for path in ["/upload", "/status/200"] {
        let response = raw_exchange(tg.addr(), &chunked_request(path, 8))
            .await
            .expect("exchange");
        assert_eq!(status(&response), 413, "{path}");
    }
    assert_eq!(up.requests(), 0, "the upstream was contacted");
    // Under the limit, the body arrives whole, with a Content-Length.
    let response = raw_exchange(tg.addr(), &chunked_request("/upload", 2))
        .await
        .expect("exchange");
    assert_eq!(status(&response), 200);
    assert!(String::from_utf8_lossy(&response).ends_with("32768"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_past_the_memory_threshold_goes_through_a_file_intact() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&up, "request_buffer_size = \"16KiB\"\n"));
    let response = raw_exchange(tg.addr(), &chunked_request("/upload", 3))
        .await
        .expect("exchange");
    assert_eq!(status(&response), 200);
    assert!(String::from_utf8_lossy(&response).ends_with("49152"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_chunk_is_the_clients_400_and_not_an_upstream_failure() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&up, ""));
    let request = b"POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\
                    Connection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    let response = raw_exchange(tg.addr(), request).await.expect("exchange");
    // hyper may close the connection on a parse error of its own; when it
    // answers, it is a 400, never a 502.
    if !response.is_empty() {
        assert_eq!(status(&response), 400);
    }
    let line = tg.wait_log("request_uri", "/upload");
    assert_eq!(line["status"], 400, "{line}");
    assert_eq!(up.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_gone_mid_body_is_logged_499_and_the_upstream_serves_on() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&up, ""));
    let mut s = TcpStream::connect(tg.addr()).await.expect("connect");
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 10000\r\n\r\nonly a little",
    )
    .await
    .expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(s);
    let line = tg.wait_log("request_uri", "/upload");
    assert_eq!(line["status"], 499, "{line}");
    assert_eq!(up.requests(), 0);
    let ok = raw_exchange(
        tg.addr(),
        b"GET /status/200 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("exchange");
    assert_eq!(status(&ok), 200);
}

/// Open `n` uploads that each send one byte every 100 ms for `for_ms`.
async fn trickle(addr: SocketAddr, n: usize, for_ms: u64) -> Vec<TcpStream> {
    let mut streams = Vec::new();
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1000\r\n\r\n")
            .await
            .expect("head");
        streams.push(s);
    }
    let rounds = for_ms / 100;
    for _ in 0..rounds {
        for s in &mut streams {
            s.write_all(b"x").await.expect("byte");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    streams
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_uploads_hold_no_upstream_connection_until_their_body_is_whole() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&up, ""));
    let streams = trickle(tg.addr(), 20, 1000).await;
    assert_eq!(up.requests(), 0, "a trickling upload reached the upstream");
    drop(streams);

    // Streaming (request_buffering = false): each upload is upstream at once.
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&up, "request_buffering = false\n"));
    let mut streams = trickle(tg.addr(), 5, 500).await;
    assert_eq!(
        up.requests(),
        5,
        "streamed uploads go upstream as they start"
    );
    for s in &mut streams {
        let _ = s.shutdown().await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_millis(100), s.read_to_end(&mut sink)).await;
    }
}
