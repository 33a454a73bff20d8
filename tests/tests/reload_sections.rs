//! Reload beyond routes and plugins, through the real binary: `[tls]`
//! listeners added, given new certificates and removed; the PROXY protocol
//! switched on and off on a listener; the `[access_log]` file moved under
//! load with every line in exactly one file; the Loki pusher pointed at
//! another Loki (stand-in, `tailgate_e2e::loki_standin`) while an unchanged
//! pusher keeps its queue across a reload; a remote_write pusher added to a
//! running proxy, read back from a real Prometheus; and restart-only keys
//! reported as such. Connections opened before each reload keep working.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tailgate_e2e::client::{admin_reload, get, keep_alive_get, proxy_v2_header, raw_exchange};
use tailgate_e2e::loki_standin::{Failure, LokiStandin, StoredLine};
use tailgate_e2e::process::{Tailgate, TempDir};
use tailgate_e2e::prometheus::Prometheus;
use tailgate_e2e::test_pki::{cert_der, tls_get, TestCa};
use tailgate_e2e::upstream::TestUpstream;
use tailgate_e2e::{app_route, base_config, eventually};
use tokio::net::TcpStream;

/// `base_config` with `extra_server` in `[server]`, `sections` after it, and
/// one route `app.test` to `up`.
fn config(up: &TestUpstream, extra_server: &str, sections: &str) -> String {
    base_config(extra_server) + sections + &app_route(&up.url())
}

/// Write `config` over the running one and reload it through `/reload`;
/// the outcome, after asserting the reload was accepted.
async fn reload_to(tg: &Tailgate, config: &str) -> serde_json::Value {
    std::fs::write(&tg.config_path, config).expect("write config");
    let (status, body) = admin_reload(tg).await;
    assert_eq!(status, 200, "{body}");
    body["outcome"].clone()
}

/// The addresses of an outcome's list `key` (`listeners_added`, ...).
fn addrs(outcome: &serde_json::Value, key: &str) -> Vec<SocketAddr> {
    outcome[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {outcome}"))
        .iter()
        .map(|a| a.as_str().expect("text").parse().expect("address"))
        .collect()
}

/// The outcome's `restarted` sections.
fn restarted(outcome: &serde_json::Value) -> Vec<String> {
    outcome["restarted"]
        .as_array()
        .unwrap_or_else(|| panic!("restarted in {outcome}"))
        .iter()
        .map(|s| s.as_str().expect("text").to_owned())
        .collect()
}

/// A TLS HTTP/1.1 connection kept open across reloads.
struct KeptTls {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl KeptTls {
    async fn open(addr: SocketAddr, ca: &TestCa) -> KeptTls {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let tls = tokio_rustls::TlsConnector::from(ca.client_config(&["http/1.1"]))
            .connect(ServerName::try_from("app.test").expect("name"), tcp)
            .await
            .expect("TLS handshake");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("http1 handshake");
        tokio::spawn(conn);
        KeptTls { sender }
    }

    async fn status(&mut self) -> u16 {
        let req = http::Request::get("/kept")
            .header("host", "app.test")
            .body(Empty::<Bytes>::new())
            .expect("request");
        self.sender
            .send_request(req)
            .await
            .expect("answered on the kept connection")
            .status()
            .as_u16()
    }
}

fn tls_section(cert: &(std::path::PathBuf, std::path::PathBuf)) -> String {
    format!(
        "\n[tls]\nlisten = [\"127.0.0.1:0\"]\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n",
        cert.0.display(),
        cert.1.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listeners_are_added_recertified_and_removed_by_reloads_keeping_open_connections() {
    let dir = TempDir::new("reload-tls");
    let ca = TestCa::new("Tailgate reload test CA");
    let first = ca.issue(&["app.test"]);
    let second = ca.issue(&["app.test"]);
    let first_files = first.write(dir.path(), "first");
    let second_files = second.write(dir.path(), "second");
    let up = TestUpstream::start();
    let plain = config(&up, "", "");
    let tg = Tailgate::start(&plain);

    // Add a TLS listener.
    let outcome = reload_to(&tg, &config(&up, "", &tls_section(&first_files))).await;
    assert!(restarted(&outcome).contains(&"tls".to_owned()), "{outcome}");
    let added = addrs(&outcome, "listeners_added");
    assert_eq!(added.len(), 1, "{outcome}");
    let https = added[0];
    assert_eq!(tg.https_addr(), https, "announced as https");
    let r = tls_get(https, ca.client_config(&["h2"]), "app.test", "/new-tls")
        .await
        .expect("served over TLS");
    assert_eq!(r.status, 200);
    assert_eq!(r.peer_cert, cert_der(&first));
    let rec = tg.wait_log("request_uri", "/new-tls");
    assert_eq!(rec["scheme"], "https");
    let mut kept = KeptTls::open(https, &ca).await;
    assert_eq!(kept.status().await, 200);

    // Other certificate files: same socket, the new certificate for new
    // connections, the open connection untouched.
    let outcome = reload_to(&tg, &config(&up, "", &tls_section(&second_files))).await;
    assert!(restarted(&outcome).contains(&"tls".to_owned()), "{outcome}");
    assert_eq!(addrs(&outcome, "listeners_reconfigured"), vec![https]);
    assert!(addrs(&outcome, "listeners_added").is_empty(), "{outcome}");
    let r = tls_get(https, ca.client_config(&["h2"]), "app.test", "/")
        .await
        .expect("served over TLS");
    assert_eq!(r.peer_cert, cert_der(&second), "the new certificate");
    assert_eq!(kept.status().await, 200, "open across the reload");

    // An unrelated reload keeps the certificates loaded as they are.
    let outcome = reload_to(
        &tg,
        &config(&up, "", &tls_section(&second_files))
            .replace("\"app.test\"", "\"app.test\", \"www.app.test\""),
    )
    .await;
    assert!(restarted(&outcome).is_empty(), "{outcome}");

    // Certificates that do not load reject the reload; TLS serves on.
    let broken = dir.write("broken.pem", "not a certificate");
    let bad = tls_section(&(broken.clone(), broken));
    std::fs::write(&tg.config_path, config(&up, "", &bad)).expect("write");
    let (status, body) = admin_reload(&tg).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("broken.pem"),
        "{body}"
    );
    let r = tls_get(https, ca.client_config(&["h2"]), "app.test", "/")
        .await
        .expect("still served");
    assert_eq!(r.peer_cert, cert_der(&second));

    // Remove [tls]: the listener refuses new connections; the open one finishes its work.
    let outcome = reload_to(&tg, &plain).await;
    assert_eq!(addrs(&outcome, "listeners_removed"), vec![https]);
    assert!(
        TcpStream::connect(https).await.is_err(),
        "removed listener refuses"
    );
    assert_eq!(kept.status().await, 200);
    assert_eq!(get(tg.addr(), "app.test", "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_switches_the_proxy_protocol_on_and_off_on_a_running_listener() {
    let up = TestUpstream::start();
    let plain = config(&up, "", "");
    let tg = Tailgate::start(&plain);
    let addr = tg.addr();
    let mut kept = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(keep_alive_get(&mut kept, "app.test").await, 200);

    let outcome = reload_to(&tg, &config(&up, "proxy_protocol = true", "")).await;
    assert_eq!(addrs(&outcome, "listeners_reconfigured"), vec![addr]);
    // New connections must open with a PROXY header now.
    let out = raw_exchange(addr, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .expect("exchange");
    assert!(
        out.is_empty(),
        "no header, no answer: {}",
        String::from_utf8_lossy(&out)
    );
    let mut raw = proxy_v2_header("198.51.100.9:40000".parse().expect("addr"), addr);
    raw.extend_from_slice(b"GET /proxied HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
    let out = raw_exchange(addr, &raw).await.expect("exchange");
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(
        tg.wait_log("request_uri", "/proxied")["client_ip"],
        "198.51.100.9"
    );
    // The connection opened before keeps being served.
    assert_eq!(keep_alive_get(&mut kept, "app.test").await, 200);

    let outcome = reload_to(&tg, &plain).await;
    assert_eq!(addrs(&outcome, "listeners_reconfigured"), vec![addr]);
    assert_eq!(get(addr, "app.test", "/").await.status, 200, "plain again");
}

/// Every `request_uri` in the JSON lines of `path`, with its count.
fn logged_uris(path: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut uris = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        *uris
            .entry(v["request_uri"].as_str().expect("request_uri").to_owned())
            .or_default() += 1;
    }
    uris
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_access_log_file_moves_on_reload_under_load_and_every_line_lands_once() {
    let dir = TempDir::new("reload-access-log");
    let one = dir.path().join("one.log");
    let two = dir.path().join("two.log");
    let up = TestUpstream::start();
    let section = |file: &Path| {
        format!(
            "\n[access_log]\nstdout = false\nfile = \"{}\"\n",
            file.display()
        )
    };
    let tg = Tailgate::start(&config(&up, "", &section(&one)));
    assert_eq!(get(tg.addr(), "app.test", "/first").await.status, 200);

    // Load from two clients while the reload moves the file.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for client in 0..2 {
        let stop = stop.clone();
        let addr = tg.addr();
        load.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 2000 {
                let path = format!("/load-{client}-{i}");
                assert_eq!(get(addr, "app.test", &path).await.status, 200, "{path}");
                sent.push(path);
                i += 1;
            }
            sent
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcome = reload_to(&tg, &config(&up, "", &section(&two))).await;
    assert_eq!(
        restarted(&outcome),
        vec!["access_log".to_owned()],
        "{outcome}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = vec!["/first".to_owned(), "/last".to_owned()];
    for task in load {
        sent.extend(task.await.expect("load client"));
    }
    assert_eq!(get(tg.addr(), "app.test", "/last").await.status, 200);

    // Every request in exactly one of the two files: none lost, none twice.
    let complete = eventually(Duration::from_secs(10), || async {
        let mut both = logged_uris(&one);
        for (uri, n) in logged_uris(&two) {
            *both.entry(uri).or_default() += n;
        }
        both.len() == sent.len()
    })
    .await;
    let (in_one, in_two) = (logged_uris(&one), logged_uris(&two));
    assert!(
        complete,
        "{} + {} lines for {} requests",
        in_one.len(),
        in_two.len(),
        sent.len()
    );
    for uri in &sent {
        let n = in_one.get(uri).unwrap_or(&0) + in_two.get(uri).unwrap_or(&0);
        assert_eq!(n, 1, "{uri} logged {n} times");
    }
    assert!(in_one.contains_key("/first") && in_two.contains_key("/last"));
    assert!(
        in_two.len() > 1,
        "lines after the reload go to the new file"
    );
}

/// `[telemetry.loki]` pushing to `loki`, quick to retry.
fn loki_section(loki: &LokiStandin) -> String {
    format!(
        "\n[telemetry.loki]\nurl = \"{}\"\nbatch_wait = \"100ms\"\nmin_backoff = \"100ms\"\nmax_backoff = \"300ms\"\nmax_retries = 1000\n",
        loki.push_url()
    )
}

/// The `request_uri`s of lines a Loki stand-in stored.
fn uris(lines: &[StoredLine]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l.line).ok())
        .filter_map(|v| v["request_uri"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_repoints_the_loki_pusher_and_an_unchanged_one_keeps_its_queue() {
    let old = LokiStandin::start();
    let new = LokiStandin::start();
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(&up, "", &loki_section(&old)));
    assert_eq!(get(tg.addr(), "app.test", "/to-old").await.status, 200);
    assert!(
        old.wait_until(Duration::from_secs(10), |lines| uris(lines)
            .contains(&"/to-old".to_owned())),
        "{:?}",
        uris(&old.lines())
    );

    let outcome = reload_to(&tg, &config(&up, "", &loki_section(&new))).await;
    let sections = restarted(&outcome);
    assert!(sections.contains(&"telemetry.loki".to_owned()), "{outcome}");
    assert!(sections.contains(&"access_log".to_owned()), "{outcome}");
    assert_eq!(get(tg.addr(), "app.test", "/to-new").await.status, 200);
    assert!(
        new.wait_until(Duration::from_secs(10), |lines| uris(lines)
            .contains(&"/to-new".to_owned())),
        "{:?}",
        uris(&new.lines())
    );
    assert!(!uris(&old.lines()).contains(&"/to-new".to_owned()));
    assert!(!uris(&new.lines()).contains(&"/to-old".to_owned()));

    // Loki down: lines queue in Tailgate. An unrelated reload (and one that
    // only changes the metric prefix, which needs a restart) keeps the
    // pusher and its queue; once Loki is back, the lines arrive.
    new.set_failure(Failure::Down);
    assert_eq!(get(tg.addr(), "app.test", "/queued").await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let unrelated = config(&up, "", &loki_section(&new))
        .replace("\"app.test\"", "\"app.test\", \"www.app.test\"");
    let outcome = reload_to(&tg, &unrelated).await;
    assert!(restarted(&outcome).is_empty(), "{outcome}");
    let prefixed = unrelated.replace(
        "[telemetry.loki]",
        "[telemetry]\nmetrics_prefix = \"edge\"\n\n[telemetry.loki]",
    );
    let outcome = reload_to(&tg, &prefixed).await;
    assert!(restarted(&outcome).is_empty(), "{outcome}");
    assert_eq!(
        outcome["needs_restart"][0], "telemetry.metrics_prefix",
        "{outcome}"
    );
    new.set_failure(Failure::None);
    assert!(
        new.wait_until(Duration::from_secs(15), |lines| uris(lines)
            .contains(&"/queued".to_owned())),
        "the queued line survived the reloads: {:?}",
        uris(&new.lines())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_write_pusher_added_by_a_reload_reaches_prometheus() {
    let prom = Prometheus::start();
    let up = TestUpstream::start();
    let tg = Tailgate::start(&config(
        &up,
        "",
        "\n[telemetry]\nlabels = { instance = \"reload-test\" }\n",
    ));
    let rw = format!(
        "\n[telemetry]\nlabels = {{ instance = \"reload-test\" }}\n\n[telemetry.remote_write]\nurl = \"{}\"\ninterval = \"500ms\"\n",
        prom.write_url()
    );
    let outcome = reload_to(&tg, &config(&up, "", &rw)).await;
    assert_eq!(
        restarted(&outcome),
        vec!["telemetry.remote_write".to_owned()],
        "{outcome}"
    );
    for _ in 0..3 {
        assert_eq!(get(tg.addr(), "app.test", "/counted").await.status, 200);
    }
    let expr = "sum(tailgate_http_requests_total{instance=\"reload-test\",host=\"app.test\"})";
    let result = prom
        .wait_for(expr, Duration::from_secs(20), |r| {
            r.first()
                .and_then(|s| s["value"][1].as_str())
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v >= 3.0)
        })
        .await;
    assert!(
        !result.is_empty(),
        "no pushed series; prometheus log:\n{}",
        prom.log()
    );
}
