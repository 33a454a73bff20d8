//! Memory of idle keep-alive connections, through the real binary: 3,000
//! keep-alive connections, each after one request, cost a few KiB each
//! (hyper's buffers are let go while a connection idles, as nginx frees
//! its keep-alive buffers; ~28 KiB each before); once they close, idle
//! workers hand the memory they freed back to the system (the allocator's
//! collect as a worker parks), instead of keeping it until they allocate
//! again.

use std::time::{Duration, Instant};

use tailgate_e2e::process::Tailgate;
use tailgate_e2e::upstream::TestUpstream;
use tailgate_e2e::{app_route, base_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 3000;
/// Most RSS one idle keep-alive connection may add (a debug build: ~5.5 KiB
/// measured; hyper's read and write buffers alone are 16 KiB).
const MAX_BYTES_PER_CONNECTION: u64 = 12 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_returns_after_the_connections_close() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&(base_config("") + &app_route(&up.url())));
    let request = b"GET /status/200 HTTP/1.1\r\nHost: app.test\r\n\r\n";
    // Warm up: the first requests size the pools and caches once.
    for _ in 0..20 {
        let mut s = TcpStream::connect(tg.addr()).await.expect("connect");
        s.write_all(request).await.expect("write");
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = tg.rss();

    let mut open = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut s = TcpStream::connect(tg.addr()).await.expect("connect");
        s.write_all(request).await.expect("write");
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).await.expect("read");
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
        open.push(s);
    }
    // Idle: a keep-alive connection gives hyper's buffers back once it has
    // been idle for a moment (server/parking.rs, PARK_AFTER).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with = tg.rss();
    drop(open);

    // Back within 40 % of what the connections took (and 2 MiB of the
    // allocator's page granularity: the connections now take little), within
    // a few seconds.
    let allowed = before + (with.saturating_sub(before)) * 2 / 5 + (2 << 20);
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut after = tg.rss();
    while after > allowed && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = tg.rss();
    }
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    eprintln!(
        "RSS: {:.1} MiB before, {:.1} MiB with {CONNECTIONS} connections, {:.1} MiB after",
        mib(before),
        mib(with),
        mib(after)
    );
    let per_connection = with.saturating_sub(before) / CONNECTIONS as u64;
    eprintln!("{per_connection} bytes per idle connection");
    assert!(
        per_connection <= MAX_BYTES_PER_CONNECTION,
        "{per_connection} bytes per idle connection (at most {MAX_BYTES_PER_CONNECTION})"
    );
    assert!(
        with > before + (4 << 20),
        "the connections did not raise RSS enough to tell: {before} -> {with}"
    );
    assert!(
        after <= allowed,
        "memory did not come back: {:.1} MiB before, {:.1} with, {:.1} after (allowed {:.1})",
        mib(before),
        mib(with),
        mib(after),
        mib(allowed)
    );
}
