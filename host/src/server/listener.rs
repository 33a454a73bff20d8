//! The accept loop and per-connection serving: each accepted socket gets its
//! own task running hyper-util's auto connection (HTTP/1.1 with upgrades,
//! or HTTP/2 when the client opens with the h2 preface — h2c prior
//! knowledge), with every request handed to the `Proxy`. A failing
//! connection only ends itself; accept errors are logged and retried.
//! Every connection is registered in the [`ConnectionTable`] at accept
//! (over `server.max_connections` the longest-idle ones are shed) and
//! closed when the timeout of its state passes (`super::timeouts`). Every
//! connection is tracked by the [`Lifecycle`]: on shutdown each one is
//! asked to finish gracefully (HTTP/1.1: close after the response in
//! flight; HTTP/2: GOAWAY) and the drain waits for them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::connection_table::{default_max_connections, ConnectionTable, Registration};
use super::handshake::ConnectionHandshake;
use super::parking::{self, drive_http1, Http1End, ReadReady};
use super::timeouts::{expired, Expiry, TrackedBody, WatchedIo};
use crate::config::model::ConnectionLimits;
use crate::lifecycle::Lifecycle;
use crate::pipeline::Proxy;

/// Pause after an accept error (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Most bytes hyper buffers for writing to one HTTP/1 client (and the
/// largest request head it reads): past this it stops reading the response
/// body, so a client that does not read holds the upstream back instead of
/// filling memory. hyper's default is ~400 KiB.
const HTTP1_MAX_BUF: usize = 64 * 1024;
/// Most bytes buffered per HTTP/2 stream for sending (hyper: 400 KiB).
const HTTP2_MAX_SEND_BUF: usize = 64 * 1024;

/// Serves connections with the proxy. Cheap to clone.
#[derive(Clone)]
pub struct ConnectionServer {
    proxy: Proxy,
    builder: Arc<ArcSwap<ConfiguredBuilder>>,
    lifecycle: Lifecycle,
    table: Arc<ConnectionTable>,
    /// `server.max_connections` when the config leaves it out.
    default_max_connections: usize,
}

/// hyper's connection builders for one set of connection limits.
struct ConfiguredBuilder {
    limits: ConnectionLimits,
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl ConfiguredBuilder {
    fn new(limits: ConnectionLimits) -> Self {
        let mut http1 = http1::Builder::new();
        // Request heads are timed by `super::timeouts` (hyper's own header
        // timeout also runs while a keep-alive connection idles).
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(HTTP1_MAX_BUF);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(limits.http2_ping_interval)
            .keep_alive_timeout(limits.http2_ping_timeout)
            .max_send_buf_size(HTTP2_MAX_SEND_BUF);
        ConfiguredBuilder {
            limits,
            http1,
            http2,
        }
    }
}

impl ConnectionServer {
    pub fn new(proxy: Proxy, lifecycle: Lifecycle) -> Self {
        let limits = proxy.active().config.server.connections;
        ConnectionServer {
            proxy,
            builder: Arc::new(ArcSwap::from_pointee(ConfiguredBuilder::new(limits))),
            lifecycle,
            table: ConnectionTable::new(),
            default_max_connections: default_max_connections(),
        }
    }

    /// The active config's connection limits, and hyper's builder for them.
    fn configured(&self) -> Arc<ConfiguredBuilder> {
        let limits = self.proxy.active().config.server.connections;
        let current = self.builder.load_full();
        if current.limits == limits {
            return current;
        }
        let fresh = Arc::new(ConfiguredBuilder::new(limits));
        self.builder.store(fresh.clone());
        fresh
    }

    /// Accept connections forever (until the task is aborted). Each one
    /// opens with the listener's `handshake` as it is when it is accepted
    /// (a reload may change it: PROXY header on or off, new certificates).
    pub async fn accept_loop(
        self,
        listener: TcpListener,
        handshake: Arc<ArcSwap<ConnectionHandshake>>,
    ) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let max = self
                        .proxy
                        .active()
                        .config
                        .server
                        .connections
                        .max_connections
                        .unwrap_or(self.default_max_connections);
                    let Some(registration) = self.table.register(max) else {
                        tracing::debug!(%peer, "connection refused: {max} connections open, none idle");
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let connections = self.lifecycle.connections().clone();
                    let handshake = handshake.load_full();
                    connections.spawn(self.clone().serve_accepted(
                        stream,
                        peer,
                        handshake,
                        registration,
                    ));
                }
                Err(e) => {
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }

    /// Serve one connection until it closes, or the timeout of its state
    /// passes, or it is shed; once shutdown begins, let it finish what is
    /// in flight and close. HTTP/1 connections idle between requests are
    /// parked without hyper (`super::parking`).
    pub async fn serve<S>(
        self,
        stream: S,
        peer: SocketAddr,
        scheme: &'static str,
        registration: Registration,
    ) where
        S: AsyncRead + AsyncWrite + ReadReady + Send + Unpin + 'static,
    {
        let configured = self.configured();
        let limits = configured.limits;
        let state = registration.state.clone();
        let proxy = self.proxy.clone();
        let service_state = state.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
            let proxy = proxy.clone();
            let state = service_state.clone();
            let request = state.request_started(req.version() == http::Version::HTTP_2);
            // Boxed: the future lives only while the request is in flight
            // (hyper keeps room for an unboxed one for the connection's life).
            Box::pin(async move {
                let response = proxy.handle_on(req, peer, scheme).await?;
                if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                    state.upgraded();
                }
                Ok::<_, crate::pipeline::CloseConnection>(
                    response.map(|body| TrackedBody::new(body, request)),
                )
            })
        });
        // The socket holds the registration: an upgraded connection counts
        // until its tunnel closes.
        let mut io = WatchedIo::new(stream, registration);
        let shutdown = self.lifecycle.shutdown_token();
        let closed = |why: Expiry| {
            tracing::debug!(%peer, "connection closed: {}", why.label());
            metrics::counter!("tailgate_connections_closed_total", "reason" => why.label())
                .increment(1);
        };
        let h2 = tokio::select! {
            h2 = parking::opens_with_h2_preface(&mut io) => h2,
            why = expired(&state, &limits) => return closed(why),
            _ = shutdown.cancelled() => return,
        };
        let ended = match h2 {
            Err(e) => {
                tracing::debug!(%peer, "connection ended: {e}");
                return;
            }
            Ok(true) => {
                // Boxed: an HTTP/1 connection's task keeps no room for it.
                let mut connection =
                    Box::pin(configured.http2.serve_connection(TokioIo::new(io), service));
                tokio::select! {
                    ended = connection.as_mut() => ended,
                    why = expired(&state, &limits) => return closed(why),
                    _ = shutdown.cancelled() => {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                }
            }
            Ok(false) => loop {
                let served_before = state.served();
                // Boxed: dropped with its buffers when the connection parks.
                let mut connection = Box::new(
                    configured
                        .http1
                        .serve_connection(TokioIo::new(io), service.clone())
                        .with_upgrades(),
                );
                let expiry = expired(&state, &limits);
                let cancelled = shutdown.cancelled();
                tokio::pin!(expiry, cancelled);
                let end = drive_http1(
                    &mut *connection,
                    &state,
                    served_before,
                    expiry,
                    cancelled,
                    |c| c.graceful_shutdown(),
                )
                .await;
                match end {
                    Http1End::Closed(ended) => break ended,
                    Http1End::Expired(why) => return closed(why),
                    Http1End::Parked => {}
                }
                let Some(parts) = (*connection).into_parts() else {
                    return;
                };
                io = parts.io.into_inner();
                io.unread(parts.read_buf);
                // Parked: the socket, its registration and its timeouts.
                tokio::select! {
                    ready = parking::readable(&io) => {
                        if ready.is_err() {
                            return;
                        }
                    }
                    why = expired(&state, &limits) => return closed(why),
                    _ = shutdown.cancelled() => return,
                }
            },
        };
        if let Err(e) = ended {
            tracing::debug!(%peer, "connection ended: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_log::AccessLog;
    use crate::pipeline::ActiveConfig;
    use crate::plugin_chain::PluginChains;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A real listener on loopback served by `ConnectionServer`; unknown
    /// hosts are closed without a response.
    async fn serve() -> (SocketAddr, tokio::sync::mpsc::Receiver<String>) {
        let config = r#"
[server]
listen = ["127.0.0.1:0"]
unknown_host = { action = "close" }
[upstreams.files]
static = "."
[[routes]]
name = "files"
hosts = ["files.test"]
path = "/"
upstream = "files"
"#;
        let dir = std::env::temp_dir();
        let config = crate::config::parse(config, &dir.join("config.toml")).expect("config");
        let (log, lines) = AccessLog::channel(16);
        let active = ActiveConfig::new(
            Arc::new(config),
            Arc::new(PluginChains::from_chains(vec![])),
            log,
        )
        .expect("active config");
        let server = ConnectionServer::new(Proxy::new(active), Lifecycle::new());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let plain = Arc::new(ArcSwap::from_pointee(ConnectionHandshake::plain(false)));
        tokio::spawn(server.accept_loop(listener, plain));
        (addr, lines)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http1_unknown_host_close_sends_nothing() {
        let (addr, mut lines) = serve().await;
        let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
        socket
            .write_all(b"GET / HTTP/1.1\r\nHost: nobody.test\r\n\r\n")
            .await
            .expect("write");
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut out))
            .await
            .expect("closed in time")
            .expect("read");
        assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));
        let line = lines.recv().await.expect("logged");
        assert!(line.contains("\"status\":444"), "{line}");
    }

    /// Read from `socket` until `count` answers of `/healthz` (body `ok`)
    /// have arrived; returns what was read.
    async fn read_answers(socket: &mut tokio::net::TcpStream, count: usize) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while String::from_utf8_lossy(&out).matches("\r\n\r\nok").count() < count {
            let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf))
                .await
                .expect("answered in time")
                .expect("read");
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&out));
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(out).expect("text")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http1_keep_alive_goes_on_after_parking() {
        let (addr, _lines) = serve().await;
        let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = "GET /healthz HTTP/1.1\r\nHost: files.test\r\n\r\n";
        socket.write_all(request.as_bytes()).await.expect("write");
        let first = read_answers(&mut socket, 1).await;
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        assert!(!first.contains("connection: close"), "{first}");

        // Idle (parked), then a head in two parts with a pause between.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (start, rest) = request.split_at(7);
        socket.write_all(start.as_bytes()).await.expect("write");
        tokio::time::sleep(Duration::from_millis(100)).await;
        socket.write_all(rest.as_bytes()).await.expect("write");
        let second = read_answers(&mut socket, 1).await;
        assert!(second.starts_with("HTTP/1.1 200"), "{second}");

        // Idle again, then three pipelined requests, the last one cut in
        // two: every answer comes, in order, on the same connection.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let pipelined = request.repeat(3);
        let (start, rest) = pipelined.split_at(pipelined.len() - 10);
        socket.write_all(start.as_bytes()).await.expect("write");
        tokio::time::sleep(Duration::from_millis(100)).await;
        socket.write_all(rest.as_bytes()).await.expect("write");
        let third = read_answers(&mut socket, 3).await;
        assert_eq!(third.matches("HTTP/1.1 200").count(), 3, "{third}");
        assert!(!third.contains("connection: close"), "{third}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_parked_connection_closes_when_the_client_does() {
        let (addr, _lines) = serve().await;
        let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
        socket
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: files.test\r\n\r\n")
            .await
            .expect("write");
        read_answers(&mut socket, 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        socket.shutdown().await.expect("half-close");
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut rest))
            .await
            .expect("closed in time")
            .expect("read");
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn h2c_prior_knowledge_works_and_a_closed_stream_keeps_the_connection() {
        let (addr, _lines) = serve().await;
        let socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(socket))
                .await
                .expect("h2c handshake");
        tokio::spawn(connection);
        let request = |authority: &str| {
            http::Request::get(format!("http://{authority}/healthz-not"))
                .body(Empty::<Bytes>::new())
                .expect("request")
        };

        // Unknown host: this stream is reset, nothing is answered.
        let refused = sender.send_request(request("nobody.test")).await;
        assert!(refused.is_err(), "{refused:?}");

        // The same connection still serves the next stream.
        let health = http::Request::get("http://files.test/healthz")
            .body(Empty::<Bytes>::new())
            .expect("request");
        let resp = sender.send_request(health).await.expect("served");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&body[..], b"ok");
        let missing = sender
            .send_request(request("files.test"))
            .await
            .expect("served");
        assert_eq!(missing.status(), 404);
    }
}
