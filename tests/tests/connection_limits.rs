//! Connection states and the connection limit through the real binary: a
//! silent client, a partial HTTP/2 preface, a partial request head, an idle
//! HTTP/1 keep-alive and an idle HTTP/2 connection are each closed after
//! their (short, configured) timeout; a client that reads nothing of a large
//! response is closed after `send_timeout`; and with `max_connections`
//! filled by idle keep-alive connections a new client is still served while
//! the longest-idle connection is shed and counted. What a client that
//! reads nothing costs in memory is bounded.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tailgate_e2e::client::{get, keep_alive_get};
use tailgate_e2e::metrics_scrape::scrape;
use tailgate_e2e::process::{Tailgate, TempDir};
use tailgate_e2e::upstream::TestUpstream;
use tailgate_e2e::{app_route, base_config, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every timeout at one second, except what `extra` sets.
fn short_timeouts(extra: &str) -> String {
    format!(
        "client_header_timeout = \"1s\"\nkeepalive_timeout = \"1s\"\nhttp2_idle_timeout = \"1s\"\n\
         send_timeout = \"1s\"\n{extra}"
    )
}

/// Read until the server closes the connection; how long that took and
/// what was read. Panics if it is still open after `limit`.
async fn closed_within(socket: &mut TcpStream, limit: Duration) -> (Duration, Vec<u8>) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let read = tokio::time::timeout_at((start + limit).into(), socket.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("still open after {limit:?}"));
        match read {
            Ok(0) | Err(_) => return (start.elapsed(), out),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The value of `name{reason=...}` (0 when absent).
async fn counter(admin: SocketAddr, name: &str, reason: Option<&str>) -> f64 {
    scrape(admin)
        .await
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| reason.is_none_or(|r| s.labels.get("reason").map(String::as_str) == Some(r)))
        .map(|s| s.value)
        .sum()
}

/// `tailgate_connections_closed_total{reason}` reaches `at_least`.
async fn assert_closed(tg: &Tailgate, reason: &str, at_least: f64) {
    let admin = tg.admin_addr();
    let reached = eventually(Duration::from_secs(3), || async {
        counter(admin, "tailgate_connections_closed_total", Some(reason)).await >= at_least
    })
    .await;
    if !reached {
        let closed: Vec<_> = scrape(admin)
            .await
            .into_iter()
            .filter(|s| s.name.starts_with("tailgate_connections"))
            .collect();
        panic!("fewer than {at_least} connections closed by {reason}: {closed:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&(base_config(&short_timeouts("")) + &app_route(&up.url())));
    let mut socket = TcpStream::connect(tg.addr()).await.expect("connect");
    let (took, out) = closed_within(&mut socket, Duration::from_secs(10)).await;
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    assert!(
        took >= Duration::from_millis(800),
        "closed too early: {took:?}"
    );
    assert_closed(&tg, "client_header_timeout", 1.0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partial_http2_preface_or_request_head_is_closed() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&(base_config(&short_timeouts("")) + &app_route(&up.url())));
    for partial in [
        &b"PRI * HTTP/2.0\r\n\r\n"[..],
        &b"GET / HTTP/1.1\r\nHost: app.test\r\n"[..],
    ] {
        let mut socket = TcpStream::connect(tg.addr()).await.expect("connect");
        socket.write_all(partial).await.expect("write");
        let (took, _) = closed_within(&mut socket, Duration::from_secs(10)).await;
        assert!(
            took >= Duration::from_millis(800),
            "closed too early: {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partial_head_after_a_request_is_closed_after_the_header_timeout() {
    let up = TestUpstream::start();
    // Keep-alive is long here: what closes the connection is the
    // unfinished second head.
    let timeouts =
        short_timeouts("").replace("keepalive_timeout = \"1s\"", "keepalive_timeout = \"60s\"");
    let tg = Tailgate::start(&(base_config(&timeouts) + &app_route(&up.url())));
    let mut socket = TcpStream::connect(tg.addr()).await.expect("connect");
    assert_eq!(keep_alive_get(&mut socket, "app.test").await, 200);
    socket
        .write_all(b"GET / HTTP/1.1\r\nHost: app")
        .await
        .expect("write");
    closed_within(&mut socket, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_keep_alive_connections_are_closed_http1_and_http2() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&(base_config(&short_timeouts("")) + &app_route(&up.url())));

    let mut socket = TcpStream::connect(tg.addr()).await.expect("connect");
    assert_eq!(keep_alive_get(&mut socket, "app.test").await, 200);
    let (took, _) = closed_within(&mut socket, Duration::from_secs(10)).await;
    assert!(
        took >= Duration::from_millis(800),
        "closed too early: {took:?}"
    );

    // HTTP/2 (prior knowledge): one request, then nothing.
    let socket = TcpStream::connect(tg.addr()).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(socket))
            .await
            .expect("h2c handshake");
    let connection = tokio::spawn(connection);
    let request = http::Request::get("http://app.test/h2")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = sender.send_request(request).await.expect("served");
    assert_eq!(resp.status(), 200);
    drop(resp);
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the idle HTTP/2 connection was closed")
        .expect("joined")
        .ok();
    assert!(start.elapsed() >= Duration::from_millis(800));
    assert_closed(&tg, "keepalive_timeout", 2.0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_reads_nothing_is_closed_after_the_send_timeout() {
    const SIZE: usize = 20 << 20;
    let root = TempDir::new("slow-reader");
    std::fs::write(root.path().join("big.bin"), vec![b'x'; SIZE]).expect("write file");
    let config = base_config(&short_timeouts(""))
        + &format!(
            r#"
[upstreams.files]
static = "{}"

[[routes]]
name = "files"
hosts = ["files.test"]
path = "/"
upstream = "files"
"#,
            root.path().display()
        );
    let tg = Tailgate::start(&config);
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(16 * 1024).expect("rcvbuf");
    let mut socket = socket.connect(tg.addr()).await.expect("connect");
    socket
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: files.test\r\n\r\n")
        .await
        .expect("write");
    // Read nothing for well past the send timeout.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, out) = closed_within(&mut socket, Duration::from_secs(10)).await;
    assert!(
        out.len() < SIZE,
        "the whole response arrived: {}",
        out.len()
    );
    assert_closed(&tg, "send_timeout", 1.0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn at_max_connections_idle_keep_alives_are_shed_and_new_clients_served() {
    let up = TestUpstream::start();
    let limits = "max_connections = 4\nkeepalive_timeout = \"60s\"\n";
    let tg = Tailgate::start(&(base_config(limits) + &app_route(&up.url())));
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut socket = TcpStream::connect(tg.addr()).await.expect("connect");
        assert_eq!(keep_alive_get(&mut socket, "app.test").await, 200);
        idle.push(socket);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for round in 0..3 {
        let reply = get(tg.addr(), "app.test", "/new-client").await;
        assert_eq!(reply.status, 200, "new client {round}");
    }
    let shed = counter(tg.admin_addr(), "tailgate_connections_shed_total", None).await;
    assert!(shed >= 1.0, "shed {shed}");
    // The oldest idle connection was the one closed.
    closed_within(&mut idle[0], Duration::from_secs(5)).await;
}

/// An upstream that answers every request with `size` bytes, written as
/// fast as the connection takes them.
async fn big_response_upstream(size: usize) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let body = Bytes::from(vec![b'b'; size]);
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match socket.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                if socket.write_all(answer.as_bytes()).await.is_ok() {
                    let _ = socket.write_all(&body).await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn what_a_slow_reader_costs_is_bounded() {
    const CLIENTS: u64 = 50;
    let upstream = big_response_upstream(20 << 20).await;
    let tg = Tailgate::start(
        &(base_config("send_timeout = \"60s\"") + &app_route(&format!("http://{upstream}"))),
    );
    // Warm up: the first request's one-time allocations are not per client.
    assert_eq!(get(tg.addr(), "app.test", "/warm").await.status, 200);
    let before = tg.rss();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(16 * 1024).expect("rcvbuf");
        let mut socket = socket.connect(tg.addr()).await.expect("connect");
        socket
            .write_all(b"GET /big HTTP/1.1\r\nHost: app.test\r\n\r\n")
            .await
            .expect("write");
        clients.push(socket);
    }
    // Let every response fill what it may buffer, then look.
    let mut grown = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        grown = tg.rss().saturating_sub(before);
    }
    let each = grown / CLIENTS;
    // hyper's default buffers held ~1.4 MiB per client (reads of up to
    // ~400 KiB from the upstream, and as much queued toward the client);
    // bounded, ~130 KiB.
    assert!(each < 400 * 1024, "{} KiB per slow reader", each / 1024);
    drop(clients);
}
