//! One plugin must not stall other requests (issue 24, section 1), through
//! the real binary: while a plugin that loops, allocates without end or
//! traps is hammered on one route, a plugin-free route keeps at least 0.8x
//! of the throughput it has alone and its p99 latency within 2x, with one
//! worker (`workers = 1`, the current-thread scheduler) and with one worker
//! per core (`workers = 0`).
//!
//! The free route is measured on [`FREE_CONNECTIONS`] keep-alive connections
//! sending back to back, in [`PAIRS`] pairs of [`SLICE`]s per mode: one
//! alone, then one under the hammer. The throughput ratio is the median of
//! the pairs' ratios and the p99s are taken over all slices of a kind, so
//! a slow moment of a shared CI machine hits both sides or is outvoted. The hammer is two keep-alive connections (the issue's
//! attack), each sending its next request [`HAMMER_GAP`] after the last
//! answer: at most ~40 requests a second, what the two connections sent
//! before the fix, when each request took the whole 50 ms budget. The test
//! measures the plugin's harm, not more clients' share of the CPU (once the
//! plugin is tripped its route answers as fast as any other). The
//! runtime's defaults apply (50 ms budget, tripped after 5 faults for 10 s):
//! the plugin's faults before its trip fall in the first pair, where the
//! free route is served between the guests' 1 ms slices.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tailgate_e2e::base_config;
use tailgate_e2e::metrics_scrape::{scrape, sum};
use tailgate_e2e::process::Tailgate;
use tailgate_e2e::upstream::TestUpstream;

/// How long each slice sends.
const SLICE: Duration = Duration::from_millis(250);
/// Alone/hammered pairs of slices per mode.
const PAIRS: usize = 10;
/// Connections on the plugin-free route.
const FREE_CONNECTIONS: usize = 8;
/// Connections hammering the faulting route.
const HAMMER_CONNECTIONS: usize = 2;
/// Pause of a hammer connection between an answer and its next request.
const HAMMER_GAP: Duration = Duration::from_millis(50);
/// The bounds of the issue.
const MIN_THROUGHPUT_RATIO: f64 = 0.8;
const MAX_P99_RATIO: f64 = 2.0;

const MODES: [&str; 3] = ["loop", "alloc", "trap"];

fn config(up: &TestUpstream, workers: u32) -> String {
    let base = base_config("")
        .replace("workers = 2", &format!("workers = {workers}"))
        .replace("hook_timeout = \"100ms\"", "hook_timeout = \"50ms\"");
    assert!(
        base.contains(&format!("workers = {workers}")) && base.contains("\"50ms\""),
        "base config changed: {base}"
    );
    let mut cfg = base
        + &format!(
            r#"
[upstreams.app]
url = "{url}"

[[routes]]
name = "free"
hosts = ["free.test"]
path = "/"
upstream = "app"
"#,
            url = up.url()
        );
    for mode in MODES {
        cfg += &format!(
            r#"
[[routes]]
name = "{mode}"
hosts = ["{mode}.test"]
path = "/"
upstream = "app"
plugin_failure = "closed"
[[routes.plugins]]
plugin = "fault-injector"
config = {{ mode = "{mode}", hook = "request" }}
"#
        );
    }
    cfg
}

/// One keep-alive HTTP/1.1 connection to the proxy.
async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    sender
}

/// GETs `host` on one connection until `stop`, `gap` apart; the latency
/// and status of each.
async fn send_until(
    addr: SocketAddr,
    host: &'static str,
    stop: Instant,
    gap: Duration,
) -> Vec<(Duration, u16)> {
    let mut sender = connect(addr).await;
    let mut answers = Vec::new();
    let mut n = 0u64;
    while Instant::now() < stop {
        n += 1;
        let request = http::Request::get(format!("/r{n}"))
            .header("host", host)
            .body(Empty::<Bytes>::new())
            .expect("request");
        let started = Instant::now();
        if sender.ready().await.is_err() {
            // The proxy closed it (after an error answer): a new one.
            sender = connect(addr).await;
        }
        let response = sender.send_request(request).await.expect("answer");
        let status = response.status().as_u16();
        response.into_body().collect().await.expect("body");
        answers.push((started.elapsed(), status));
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
    }
    answers
}

/// What the free route did during one slice.
struct Slice {
    per_second: f64,
    latencies: Vec<Duration>,
}

/// One slice: the free route on its connections, and `hammered` (if any)
/// on the hammer's. Every free answer must be a 200, every hammered one
/// the fail-closed 500.
async fn slice(addr: SocketAddr, hammered: Option<&'static str>) -> Slice {
    let stop = Instant::now() + SLICE;
    let free: Vec<_> = (0..FREE_CONNECTIONS)
        .map(|_| tokio::spawn(send_until(addr, "free.test", stop, Duration::ZERO)))
        .collect();
    let hammer: Vec<_> = hammered
        .into_iter()
        .flat_map(|host| (0..HAMMER_CONNECTIONS).map(move |_| host))
        .map(|host| tokio::spawn(send_until(addr, host, stop, HAMMER_GAP)))
        .collect();
    let started = Instant::now();
    let mut latencies = Vec::new();
    for task in free {
        for (latency, status) in task.await.expect("free connection") {
            assert_eq!(status, 200, "the plugin-free route answers");
            latencies.push(latency);
        }
    }
    let took = started.elapsed();
    for task in hammer {
        for (_, status) in task.await.expect("hammer connection") {
            assert_eq!(
                status, 500,
                "{hammered:?}: the faulting plugin fails closed"
            );
        }
    }
    Slice {
        per_second: latencies.len() as f64 / took.as_secs_f64(),
        latencies,
    }
}

fn p99(mut latencies: Vec<Duration>) -> Duration {
    latencies.sort();
    latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)]
}

/// The free route alone and with `host` hammered: the median of the
/// pairs' throughput ratios, and the p99 of each side.
async fn measure(addr: SocketAddr, host: &'static str) -> (f64, Duration, Duration) {
    let mut ratios = Vec::new();
    let (mut alone, mut hammered) = (Vec::new(), Vec::new());
    for _ in 0..PAIRS {
        // Hammered slices apart: the faults before the trip stay in the
        // first pair or two, not in one run of hammered slices.
        let a = slice(addr, None).await;
        let h = slice(addr, Some(host)).await;
        ratios.push(h.per_second / a.per_second);
        alone.extend(a.latencies);
        hammered.extend(h.latencies);
    }
    (median(ratios), p99(alone), p99(hammered))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// Each mode measured against the free route alone; asserts the bounds
/// and that each faulting plugin was tripped.
async fn other_routes_keep_their_service(workers: u32) {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&up, workers));
    let addr = tg.addr();
    // Warm up: connections, the upstream pool, the allocator.
    slice(addr, None).await;
    let mut results = Vec::new();
    for mode in MODES {
        let host: &'static str = match mode {
            "loop" => "loop.test",
            "alloc" => "alloc.test",
            _ => "trap.test",
        };
        results.push((mode, measure(addr, host).await));
    }
    let report: Vec<String> = results
        .iter()
        .map(|(mode, (rate, alone, hammered))| {
            format!("{mode}: throughput {rate:.2}x, p99 {alone:.1?} alone -> {hammered:.1?}")
        })
        .collect();
    let report = format!("workers = {workers}: {}", report.join("; "));
    eprintln!("{report}");
    for (mode, (rate, alone, hammered)) in &results {
        assert!(
            *rate >= MIN_THROUGHPUT_RATIO,
            "{mode}: the free route kept {rate:.2}x of its throughput\n{report}"
        );
        let p99 = hammered.as_secs_f64() / alone.as_secs_f64();
        assert!(
            p99 <= MAX_P99_RATIO,
            "{mode}: the free route's p99 grew {p99:.2}x\n{report}"
        );
    }
    let samples = scrape(tg.admin_addr()).await;
    for mode in MODES {
        let trips = sum(
            &samples,
            "tailgate_plugin_tripped_total",
            &[("route", mode)],
        );
        assert!(trips >= 1.0, "{mode}: the plugin was not tripped\n{report}");
    }
}

/// The tests measure throughput: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_worker_a_faulting_plugin_does_not_stall_other_routes() {
    let _alone = ONE_AT_A_TIME.lock().await;
    other_routes_keep_their_service(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_worker_per_core_a_faulting_plugin_does_not_stall_other_routes() {
    let _alone = ONE_AT_A_TIME.lock().await;
    other_routes_keep_their_service(0).await;
}
