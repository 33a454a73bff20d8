//! A real HTTP/1.1 upstream server on loopback whose behaviour each test
//! controls through the path: echo, status, delay, streaming upload counter,
//! large downloads, and a WebSocket echo. Runs on its own thread and runtime.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Requests served, for tests that count upstream hits.
#[derive(Default)]
pub struct UpstreamStats {
    pub requests: AtomicU64,
    /// Requests per path (`/cache/...` paths count theirs).
    pub paths: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl UpstreamStats {
    /// Count a request for `path`; returns its number (1 for the first).
    pub fn count_path(&self, path: &str) -> u64 {
        let mut paths = self.paths.lock().expect("paths lock");
        let n = paths.entry(path.to_string()).or_insert(0);
        *n += 1;
        *n
    }
}

pub struct TestUpstream {
    pub addr: SocketAddr,
    pub stats: Arc<UpstreamStats>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestUpstream {
    /// Start the server on 127.0.0.1 with a free port.
    ///
    /// Paths:
    /// - `/status/N` answers status N with body `status N`;
    /// - `/delay/MS` waits MS milliseconds, then answers 200;
    /// - `/upload` reads the whole request body streaming and answers its length;
    /// - `/bytes/N` answers N bytes of `x`;
    /// - `/ws` is a WebSocket echo;
    /// - `/headers/NAME=VALUE,...` answers 200 with those response headers;
    /// - `/cache/NAME?...` answers with caching headers the test controls
    ///   (see `cache_upstream`);
    /// - anything else echoes the request as JSON: method, uri, headers
    ///   (after `delay_ms` milliseconds when the query has `delay_ms=N`).
    pub fn start() -> TestUpstream {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let stats = Arc::new(UpstreamStats::default());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let st = stats.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("listener");
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let st = st.clone();
                        tokio::spawn(async move {
                            let svc = service_fn(move |req| {
                                let st = st.clone();
                                async move { Ok::<_, Infallible>(handle(req, st).await) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), svc)
                                .with_upgrades()
                                .await;
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = rx => {}
                }
            });
        });
        TestUpstream {
            addr,
            stats,
            shutdown: Some(tx),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::SeqCst)
    }

    /// Requests served for one path so far.
    pub fn path_requests(&self, path: &str) -> u64 {
        let paths = self.stats.paths.lock().expect("paths lock");
        paths.get(path).copied().unwrap_or(0)
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Full::new(body.into()).map_err(|e| match e {}).boxed())
        .expect("response")
}

async fn handle(req: Request<Incoming>, stats: Arc<UpstreamStats>) -> Response<Body> {
    stats.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let first = parts.next().unwrap_or("");
    let arg = parts.next().unwrap_or("");
    match first {
        "status" => {
            let code = arg.parse().unwrap_or(500);
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            full(status, format!("status {code}"))
        }
        "delay" => {
            let ms = arg.parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            full(StatusCode::OK, "delayed")
        }
        "upload" => {
            let mut body = req.into_body();
            let mut n: u64 = 0;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => {
                        if let Some(d) = f.data_ref() {
                            n += d.len() as u64;
                        }
                    }
                    Err(_) => return full(StatusCode::BAD_REQUEST, "body error"),
                }
            }
            full(StatusCode::OK, n.to_string())
        }
        "bytes" => {
            let n: usize = arg.parse().unwrap_or(0);
            full(StatusCode::OK, vec![b'x'; n])
        }
        "headers" => {
            let mut resp = full(StatusCode::OK, "with headers");
            for pair in arg.split(',') {
                if let Some((k, v)) = pair.split_once('=') {
                    if let (Ok(k), Ok(v)) = (
                        http::HeaderName::from_bytes(k.as_bytes()),
                        http::HeaderValue::from_str(v),
                    ) {
                        resp.headers_mut().append(k, v);
                    }
                }
            }
            resp
        }
        "ws" => websocket_echo(req),
        "cache" => crate::cache_upstream::respond(&req, arg, &stats).await,
        _ => {
            if let Some(ms) = query_delay_ms(req.uri()) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            echo(req)
        }
    }
}

/// `delay_ms=N` from the query string.
fn query_delay_ms(uri: &http::Uri) -> Option<u64> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("delay_ms="))
        .and_then(|ms| ms.parse().ok())
}

fn echo(req: Request<Incoming>) -> Response<Body> {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into(),
            )
        })
        .collect();
    let body = serde_json::json!({
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "headers": headers,
    });
    let mut resp = full(StatusCode::OK, body.to_string());
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert("server", http::HeaderValue::from_static("test-upstream"));
    resp
}

fn websocket_echo(mut req: Request<Incoming>) -> Response<Body> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return full(StatusCode::BAD_REQUEST, "not a websocket request");
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        let (mut tx, mut rx) = ws.split();
        while let Some(Ok(msg)) = rx.next().await {
            if msg.is_text() || msg.is_binary() {
                if tx.send(msg).await.is_err() {
                    break;
                }
            } else if msg.is_close() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", accept)
        .body(Full::new(Bytes::new()).map_err(|e| match e {}).boxed())
        .expect("response")
}

/// A loopback port that accepts connections and never answers: requests to
/// it time out (504). Returns the address; the socket lives until the thread ends.
pub fn silent_upstream() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    addr
}

/// A loopback address with nothing listening: connecting is refused (502).
pub fn dead_upstream() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
    // dropped here: the port is closed
}
