//! A real Prometheus server for the telemetry tests: the Debian
//! `prometheus` binary (installed by `scripts/install-test-deps.sh`),
//! started with `--web.enable-remote-write-receiver` on a loopback port,
//! a temporary TSDB and no scrape jobs, so every sample in it was pushed by
//! Tailgate. Queried back with PromQL over its HTTP API. Killed (by PID) on
//! drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::process::TempDir;

/// The binary: `PROMETHEUS_BIN` or `prometheus` on the PATH.
pub fn prometheus_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PROMETHEUS_BIN") {
        return PathBuf::from(bin);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let candidate = PathBuf::from(dir).join("prometheus");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("prometheus is not installed: run `bash scripts/install-test-deps.sh` (Debian package `prometheus`)");
}

/// A free loopback port (for a Prometheus started later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl Prometheus {
    /// Start on a free port and wait until it is ready.
    pub fn start() -> Prometheus {
        Self::start_on(free_port())
    }

    /// Start on `port` and wait (up to 60 s) until it is ready.
    pub fn start_on(port: u16) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let config = dir.write("prometheus.yml", "global:\n  scrape_interval: 1h\n");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(prometheus_bin())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--storage.tsdb.retention.time=1d")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        let mut prometheus = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        prometheus.wait_ready();
        prometheus
    }

    /// The remote_write receiver's URL.
    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited with {status}:\n{}", self.log());
            }
            if let Ok(stream) = std::net::TcpStream::connect(self.addr) {
                use std::io::{Read, Write};
                let mut stream = stream;
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = stream.write_all(
                    format!("GET /-/ready HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).as_bytes(),
                );
                let mut reply = String::new();
                let _ = stream.read_to_string(&mut reply);
                if reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within 60s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Prometheus's own log (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Run an instant PromQL query; the `data.result` array.
    pub async fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let url = format!(
            "http://{}/api/v1/query?query={}",
            self.addr,
            url_encode(expr)
        );
        let v = get_json(&url).await;
        assert_eq!(v["status"], "success", "query {expr} failed: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The single value of a query whose result is one series (or a scalar),
    /// or `None` when it has no data.
    pub async fn value(&self, expr: &str) -> Option<f64> {
        let result = self.query(expr).await;
        match result.as_slice() {
            [] => None,
            [one] => one["value"][1].as_str().and_then(|v| v.parse().ok()),
            many => panic!("{expr}: expected one series, got {}: {many:?}", many.len()),
        }
    }

    /// Poll `expr` until `pred` holds for its result; the last result.
    pub async fn wait_for(
        &self,
        expr: &str,
        timeout: Duration,
        pred: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.query(expr).await;
            if pred(&result) || Instant::now() > deadline {
                return result;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `url` and parse the body as JSON.
pub async fn get_json(url: &str) -> serde_json::Value {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = url.parse().expect("url");
    let response = tokio::time::timeout(Duration::from_secs(30), client.get(uri))
        .await
        .unwrap_or_else(|_| panic!("GET {url}: timed out"))
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "GET {url}: not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    })
}

/// Percent-encode a query parameter value.
pub fn url_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
