//! The process lifecycle through the real binary: the start-up summary, and
//! a `SIGTERM`/`SIGINT` drain — new connections refused, `/healthz` 503,
//! long requests and an open WebSocket finish, the access log is flushed,
//! exit 0 within `drain_timeout` — and a drain cut short at the timeout.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Method;
use tailgate_e2e::client::{get, send};
use tailgate_e2e::process::Tailgate;
use tailgate_e2e::upstream::TestUpstream;
use tailgate_e2e::{app_route, base_config};
use tokio_tungstenite::tungstenite::Message;

fn config(up: &TestUpstream, drain_timeout: &str) -> String {
    base_config(&format!("drain_timeout = \"{drain_timeout}\""))
        + &format!(
            r#"
{app}
[[routes.plugins]]
plugin = "header-rewrite"
[routes.plugins.config]
response.set = {{ "X-Route" = "app" }}
"#,
            app = app_route(&up.url())
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_prints_a_summary_of_listeners_routes_plugins_and_upstreams() {
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&up, "5s"));
    // The summary follows the listeners' announcements: wait for its end.
    tg.stderr
        .wait_for(Duration::from_secs(10), |line| line.contains("telemetry:"))
        .expect("the start-up summary");
    let text = tg.stderr.snapshot().join("\n");
    assert!(
        text.contains(&format!("listeners: http://{}", tg.addr())),
        "{text}"
    );
    assert!(
        text.contains(&format!("admin api: http://{}", tg.admin_addr())),
        "{text}"
    );
    assert!(
        text.contains("app.test /* -> app (plugins: header-rewrite)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("app              {}/", up.url())),
        "{text}"
    );
    assert!(text.contains("telemetry:"), "{text}");
}

async fn open_websocket(
    tg: &Tailgate,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect(tg.addr())
        .await
        .expect("connect");
    let req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        "ws://app.test/ws",
    )
    .expect("ws request");
    let (ws, resp) = tokio_tungstenite::client_async(req, stream)
        .await
        .expect("ws handshake through proxy");
    assert_eq!(resp.status(), 101);
    ws
}

async fn echo(ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, text: &str) {
    ws.send(Message::text(text.to_string()))
        .await
        .expect("send");
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo in time")
        .expect("message")
        .expect("ok");
    assert_eq!(msg.into_text().expect("text").as_str(), text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_long_requests_and_websockets_then_exits_zero() {
    let up = TestUpstream::start();
    let mut tg = Tailgate::start(&config(&up, "10s"));
    let addr = tg.addr();
    let admin = tg.admin_addr();
    assert_eq!(get(admin, "admin", "/healthz").await.status, 200);

    let mut ws = open_websocket(&tg).await;
    echo(&mut ws, "before").await;
    let before = up.requests();
    let long: Vec<_> = (0..3)
        .map(|i| {
            tokio::spawn(async move {
                send(
                    addr,
                    Method::GET,
                    "app.test",
                    &format!("/delay/{}", 1500 + i),
                    &[],
                    Bytes::new(),
                )
                .await
            })
        })
        .collect();
    // Let the long requests reach the upstream.
    let reached = Instant::now() + Duration::from_secs(5);
    while up.requests() < before + 3 && Instant::now() < reached {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(up.requests(), before + 3, "the long requests are in flight");

    let signalled = Instant::now();
    tg.signal("TERM");
    // Draining: health fails, new connections are refused.
    let draining = async {
        loop {
            if let Ok(r) = send(admin, Method::GET, "admin", "/healthz", &[], Bytes::new()).await {
                if r.status == 503 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(2), draining)
        .await
        .expect("/healthz answers 503 while draining");
    let refused = async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(2), refused)
        .await
        .expect("new connections are refused");

    // In flight: the WebSocket still echoes; the long requests complete.
    echo(&mut ws, "during the drain").await;
    for request in long {
        let reply = request
            .await
            .expect("task")
            .expect("long request completes");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "delayed");
        assert_eq!(reply.header("x-route").as_deref(), Some("app"));
    }
    assert!(tg.is_running(), "still draining the WebSocket");
    ws.close(None).await.expect("close");

    let status = tg
        .wait_exit(Duration::from_secs(10))
        .expect("exits within the drain timeout");
    assert!(status.success(), "{status}");
    assert!(signalled.elapsed() < Duration::from_secs(10));
    // Flushed: every exchange is in the access log.
    let log = tg.access_log();
    for i in 0..3 {
        let uri = format!("/delay/{}", 1500 + i);
        assert!(
            log.iter()
                .any(|l| l["request_uri"] == uri.as_str() && l["status"] == 200),
            "{uri} logged: {log:#?}"
        );
    }
    assert!(
        log.iter()
            .any(|l| l["request_uri"] == "/ws" && l["status"] == 101),
        "websocket logged: {log:#?}"
    );
    let stderr = tg.stderr.snapshot().join("\n");
    assert!(
        stderr.contains("drained: every request finished"),
        "{stderr}"
    );
}

/// Sends a GET for `path` (a `/delay/<ms>` of the test upstream) in the
/// background and returns once the upstream has it.
async fn slow_request(
    tg: &Tailgate,
    up: &TestUpstream,
    path: &'static str,
) -> tokio::task::JoinHandle<Result<tailgate_e2e::client::Reply, String>> {
    let before = up.requests();
    let addr = tg.addr();
    let slow =
        tokio::spawn(
            async move { send(addr, Method::GET, "app.test", path, &[], Bytes::new()).await },
        );
    let reached = Instant::now() + Duration::from_secs(5);
    while up.requests() <= before && Instant::now() < reached {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    slow
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_longer_than_the_timeout_is_cut_short_and_still_exits_zero() {
    let up = TestUpstream::start();
    let mut tg = Tailgate::start(&config(&up, "1s"));
    let slow = slow_request(&tg, &up, "/delay/20000").await;
    let signalled = Instant::now();
    tg.signal("INT");
    let status = tg
        .wait_exit(Duration::from_secs(8))
        .expect("exits after the drain timeout");
    assert!(status.success(), "{status}");
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(6),
        "exit {took:?} after SIGINT with drain_timeout 1s"
    );
    assert!(slow.await.expect("task").is_err(), "the cut request fails");
    let stderr = tg.stderr.snapshot().join("\n");
    assert!(stderr.contains("still open after 1s"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_the_loki_queue_including_requests_finished_during_the_drain() {
    let up = TestUpstream::start();
    let loki = tailgate_e2e::loki_standin::LokiStandin::start();
    // A batch would wait 10 minutes: only the shutdown flush can send it.
    let telemetry = format!(
        "\n[telemetry.loki]\nurl = \"{}\"\nbatch_wait = \"10m\"\n",
        loki.push_url()
    );
    let mut tg = Tailgate::start(&(config(&up, "10s") + &telemetry));
    let addr = tg.addr();
    for i in 0..3 {
        assert_eq!(
            get(addr, "app.test", &format!("/before/{i}")).await.status,
            200
        );
    }
    let before = up.requests();
    let long = tokio::spawn(async move {
        send(
            addr,
            Method::GET,
            "app.test",
            "/delay/800",
            &[],
            Bytes::new(),
        )
        .await
    });
    let reached = Instant::now() + Duration::from_secs(5);
    while up.requests() < before + 1 && Instant::now() < reached {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        loki.lines().is_empty(),
        "nothing pushed before the shutdown"
    );

    tg.signal("TERM");
    let reply = long
        .await
        .expect("task")
        .expect("the long request completes");
    assert_eq!(reply.status, 200);
    let status = tg.wait_exit(Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{status}");
    let pushed: Vec<String> = loki.lines().into_iter().map(|l| l.line).collect();
    for uri in ["/before/0", "/before/1", "/before/2", "/delay/800"] {
        assert!(
            pushed.iter().any(|l| l.contains(&format!("\"{uri}\""))),
            "{uri} reached Loki at shutdown: {pushed:#?}"
        );
    }
}

/// `workers = 1` runs the proxy on tokio's current-thread scheduler: the
/// same thread accepts, proxies, runs the plugins, reloads and drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_proxies_runs_plugins_reloads_and_drains() {
    let up = TestUpstream::start();
    let one_worker = config(&up, "5s").replace("workers = 2", "workers = 1");
    assert!(one_worker.contains("workers = 1"), "{one_worker}");
    let mut tg = Tailgate::start(&one_worker);
    let reply = get(tg.addr(), "app.test", "/").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("x-route").as_deref(),
        Some("app"),
        "the plugin ran"
    );

    tg.signal("HUP");
    tg.stderr
        .wait_for(Duration::from_secs(20), |l| l.contains("config reloaded"))
        .unwrap_or_else(|| panic!("stderr:\n{}", tg.stderr.snapshot().join("\n")));
    assert_eq!(get(tg.addr(), "app.test", "/").await.status, 200);

    let slow = slow_request(&tg, &up, "/delay/1500").await;
    tg.signal("TERM");
    let status = tg
        .wait_exit(Duration::from_secs(10))
        .expect("exits after the drain");
    assert!(status.success(), "{status}");
    let slow = slow
        .await
        .expect("task")
        .expect("the slow request finishes");
    assert_eq!(slow.status, 200);
}

/// log-shape's `on-log` runs on the log thread, in batches, not on the
/// request's worker: a `SIGTERM` right after a burst still writes every
/// shaped line before the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_a_burst_writes_every_plugin_shaped_line() {
    const REQUESTS: usize = 300;
    let up = TestUpstream::start();
    let config = base_config("drain_timeout = \"5s\"")
        + &format!(
            r#"
{app}
[[routes.plugins]]
plugin = "log-shape"
[routes.plugins.config]
fields = [{{ name = "shaped_uri", from = "request_uri" }}, {{ name = "code", from = "status" }}]
"#,
            app = app_route(&up.url())
        );
    let mut tg = Tailgate::start(&config);
    let addr = tg.addr();
    let sent = futures_util::future::join_all(
        (0..REQUESTS)
            .map(|i| async move { get(addr, "app.test", &format!("/burst/{i}")).await.status }),
    )
    .await;
    assert!(sent.iter().all(|s| *s == 200), "{sent:?}");

    tg.signal("TERM");
    let status = tg.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{status}");
    let log = tg.access_log();
    let shaped: std::collections::BTreeSet<String> = log
        .iter()
        .filter(|l| l["code"] == 200)
        .filter_map(|l| l["shaped_uri"].as_str().map(str::to_owned))
        .collect();
    let missing: Vec<usize> = (0..REQUESTS)
        .filter(|i| !shaped.contains(&format!("/burst/{i}")))
        .collect();
    assert!(
        missing.is_empty(),
        "lines missing for {missing:?}; log: {log:#?}"
    );
    assert!(
        log.iter().all(|l| l.get("request_method").is_none()),
        "every line is the plugin's, none the default: {log:#?}"
    );
}
