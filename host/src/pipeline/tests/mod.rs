//! The pipeline driven without a socket: `Proxy::handle` on built requests,
//! against real loopback upstreams and scripted plugins, checking what a
//! client and the access log see. Shared here: a loopback echo upstream and
//! the harness; the cases are in the submodules.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, Request, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tailgate_runtime::{
    HeaderEdit, HeaderOp, HookSet, ImmediateResponse, LogLine, LogRecord, LogVerdict, PluginFault,
    RequestAction, RequestEdits, RequestHead, ResponseEdits, ResponseHead, Var,
};
use tokio::sync::mpsc;

use super::*;
use crate::config::model::{FailurePolicy, RouteName};
use crate::plugin_chain::{ChainEntry, HookCall, PluginHooks, RouteChain};

const CLIENT: &str = "203.0.113.9:40000";

// === test upstream ===

/// A loopback HTTP/1.1 upstream: `/status/N` answers N, `/upload` answers
/// the body's length, anything else echoes method, URI and headers as JSON
/// (with some hop-by-hop response headers the proxy must strip).
async fn echo_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), hyper::service::service_fn(echo)),
            );
        }
    });
    addr
}

async fn echo(req: Request<Incoming>) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let full_path = req.uri().path();
    let path = full_path
        .strip_prefix("/base")
        .unwrap_or(full_path)
        .to_string();
    if let Some(code) = path.strip_prefix("/status/") {
        let status = code.parse().unwrap_or(500);
        let mut resp = http::Response::new(Full::from(format!("status {status}")));
        *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT);
        return Ok(resp);
    }
    if path == "/upload" {
        let n = match req.into_body().collect().await {
            Ok(body) => body.to_bytes().len().to_string(),
            Err(e) => format!("error: {e}"),
        };
        return Ok(http::Response::new(Full::from(n)));
    }
    let mut headers = serde_json::Map::new();
    for (name, value) in req.headers() {
        let entry = headers
            .entry(name.as_str().to_string())
            .or_insert_with(|| serde_json::Value::Array(vec![]));
        if let serde_json::Value::Array(values) = entry {
            values.push(String::from_utf8_lossy(value.as_bytes()).into());
        }
    }
    let body = serde_json::json!({
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "headers": headers,
    });
    let resp = http::Response::builder()
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("server", "echo")
        .header("x-end", "kept")
        .body(Full::from(body.to_string()))
        .expect("response");
    Ok(resp)
}

/// A port nothing listens on.
fn dead_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
}

// === harness ===

struct Harness {
    proxy: Proxy,
    log: mpsc::Receiver<String>,
    dir: PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// A header the echo upstream received.
    fn echoed(&self, name: &str) -> Option<String> {
        self.json()["headers"][name][0].as_str().map(str::to_string)
    }
}

fn harness(config: &str, chains: Vec<RouteChain>) -> Harness {
    let dir = std::env::temp_dir().join(format!(
        "tailgate-pipeline-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(dir.join("www/sub")).expect("mkdir");
    std::fs::write(dir.join("www/index.html"), "<h1>home</h1>").expect("write");
    std::fs::write(dir.join("50x.html"), "<p>back soon</p>").expect("write");
    let config = crate::config::parse(config, &dir.join("config.toml")).expect("valid config");
    let (access_log, log) = AccessLog::channel(64);
    let active = ActiveConfig::new(
        Arc::new(config),
        Arc::new(PluginChains::from_chains(chains)),
        access_log,
    )
    .expect("upstreams");
    Harness {
        proxy: Proxy::new(active),
        log,
        dir,
    }
}

impl Harness {
    async fn send<B>(&self, req: Request<B>) -> Answer
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let peer: SocketAddr = CLIENT.parse().expect("peer");
        let resp = self.proxy.handle(req, peer).await.expect("a response");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, host: &str, path: &str) -> Answer {
        self.send(request(host, path)).await
    }

    /// The next access-log line: lines are built on the log thread, so it
    /// may come a few milliseconds after the response.
    async fn next_line(&mut self) -> String {
        tokio::time::timeout(std::time::Duration::from_secs(5), self.log.recv())
            .await
            .expect("an access-log line within 5 s")
            .expect("the access log is open")
    }

    /// No line comes (one more flush interval of the log thread than a
    /// line would take).
    async fn no_line(&mut self) {
        let wait = 5 * crate::pipeline::log_thread::FLUSH_INTERVAL;
        let line = tokio::time::timeout(wait, self.log.recv()).await;
        assert!(line.is_err(), "a line came: {line:?}");
    }

    /// The next access-log line (a default one), parsed.
    async fn next_log(&mut self) -> serde_json::Value {
        let line = self.next_line().await;
        serde_json::from_str(&line).expect("a JSON line")
    }
}

fn request(host: &str, path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", host)
        .header("user-agent", "test/1")
        .body(Full::new(Bytes::new()))
        .expect("request")
}

fn config(upstream: SocketAddr, extra_server: &str, routes: &str) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
trusted_proxies = ["10.0.0.0/8"]
{extra_server}

[upstreams.echo]
url = "http://{upstream}/base"
[upstreams.dead]
url = "http://{dead}"
[upstreams.files]
static = "www"

[[routes]]
name = "app"
hosts = ["app.test"]
path = "/"
upstream = "echo"
max_body_size = "1KiB"
{routes}
"#,
        dead = dead_port()
    )
}

mod dial_target;
mod exchange;
mod plugins;
mod routing;
