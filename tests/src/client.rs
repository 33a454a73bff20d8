//! A small HTTP client for the tests: HTTP/1.1 or h2c (prior knowledge) to a
//! tailgate listener, with the Host header and extra headers under test control.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A fully read response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
    /// From an echo response: the value of request header `name` the upstream got.
    pub fn echoed_header(&self, name: &str) -> Option<String> {
        self.json()["headers"]
            .as_array()?
            .iter()
            .find(|h| h[0].as_str() == Some(name))
            .and_then(|h| h[1].as_str().map(str::to_string))
    }
    /// From an echo response: every value of request header `name`.
    pub fn echoed_headers(&self, name: &str) -> Vec<String> {
        self.json()["headers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|h| h[0].as_str() == Some(name))
                    .filter_map(|h| h[1].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One request to `addr` with Host `host`.
pub async fn send(
    addr: SocketAddr,
    method: Method,
    host: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Reply, String> {
    send_on(false, addr, method, host, path_and_query, headers, body).await
}

/// GET `path` with Host `host`; panics on transport errors.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Reply {
    send(addr, Method::GET, host, path, &[], Bytes::new())
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// GET with extra request headers; panics on transport errors.
pub async fn get_with(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(addr, Method::GET, host, path, headers, Bytes::new())
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Like [`send`], over HTTP/2 with prior knowledge (h2c) when `h2c` is true.
pub async fn send_on(
    h2c: bool,
    addr: SocketAddr,
    method: Method,
    host: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Reply, String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(h2c)
        .build_http();
    let uri = if h2c {
        format!("http://{host}{path_and_query}")
    } else {
        format!("http://{addr}{path_and_query}")
    };
    let mut builder = Request::builder().method(method).uri(uri);
    if !h2c {
        builder = builder.header("host", host);
    }
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let req = builder
        .body(Full::new(body.into()))
        .map_err(|e| e.to_string())?;
    let resp = if h2c {
        // Resolve `host` to the listener: connect to addr, keep :authority = host.
        let client2: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(FixedConnector(addr));
        client2.request(req).await.map_err(|e| format!("{e:?}"))?
    } else {
        client.request(req).await.map_err(|e| format!("{e:?}"))?
    };
    let status = resp.status();
    let version = resp.version();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Reply {
        status,
        headers,
        body,
        version,
    })
}

/// A connector that always dials one address, whatever the URI's host.
#[derive(Clone)]
struct FixedConnector(SocketAddr);

impl tower_service::Service<http::Uri> for FixedConnector {
    type Response = hyper_util::rt::TokioIo<tokio::net::TcpStream>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let addr = self.0;
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(addr).await?;
            Ok(hyper_util::rt::TokioIo::new(s))
        })
    }
}

/// Write raw bytes to `addr` and read until the peer closes (or 5 s pass).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(request).await?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
    Ok(out)
}

/// `POST /reload` on `tg`'s admin API: (status, JSON body).
pub async fn admin_reload(tg: &crate::process::Tailgate) -> (u16, serde_json::Value) {
    let reply = send(
        tg.admin_addr(),
        Method::POST,
        "admin",
        "/reload",
        &[],
        Bytes::new(),
    )
    .await
    .expect("POST /reload");
    (reply.status.as_u16(), reply.json())
}

/// A PROXY protocol v2 header (TCP over IPv4) from `src` to `dst`.
pub fn proxy_v2_header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(src), SocketAddr::V4(dst)) = (src, dst) else {
        panic!("IPv4 only");
    };
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[0x21, 0x11, 0x00, 12]);
    out.extend_from_slice(&src.ip().octets());
    out.extend_from_slice(&dst.ip().octets());
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

/// One HTTP/1.1 keep-alive request on an open connection; the status.
pub async fn keep_alive_get(socket: &mut TcpStream, host: &str) -> u16 {
    let request = format!("GET /keep-alive HTTP/1.1\r\nHost: {host}\r\n\r\n");
    socket.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = tokio::time::timeout_at(deadline.into(), socket.read(&mut chunk))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length: usize = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= head_end + 4 + length {
                return text[9..12].parse().expect("status");
            }
        }
    }
}
