//! The accept loop and per-connection serving: each accepted socket gets its
//! own task running hyper-util's auto connection (HTTP/1.1 with upgrades,
//! or HTTP/2 when the client opens with the h2 preface — h2c prior
//! knowledge), with every request handed to the `Proxy`. A failing
//! connection only ends itself; accept errors are logged and retried.
//! Every connection is tracked by the [`Lifecycle`]: on shutdown each one is
//! asked to finish gracefully (HTTP/1.1: close after the response in
//! flight; HTTP/2: GOAWAY) and the drain waits for them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::handshake::ConnectionHandshake;
use crate::lifecycle::Lifecycle;
use crate::pipeline::Proxy;

/// Time a client has to send a complete HTTP/1 request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 PING interval on idle connections.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Pause after an accept error (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves connections with the proxy. Cheap to clone.
#[derive(Clone)]
pub struct ConnectionServer {
    proxy: Proxy,
    builder: Arc<auto::Builder<TokioExecutor>>,
    lifecycle: Lifecycle,
}

/// Keeps the active-connections gauge true, however a connection ends.
struct ConnectionGauge;

impl ConnectionGauge {
    fn open() -> Self {
        metrics::gauge!("tailgate_active_connections").increment(1.0);
        ConnectionGauge
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        metrics::gauge!("tailgate_active_connections").decrement(1.0);
    }
}

impl ConnectionServer {
    pub fn new(proxy: Proxy, lifecycle: Lifecycle) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_KEEP_ALIVE);
        ConnectionServer {
            proxy,
            builder: Arc::new(builder),
            lifecycle,
        }
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
                    let _ = stream.set_nodelay(true);
                    let connections = self.lifecycle.connections().clone();
                    let handshake = handshake.load_full();
                    connections.spawn(self.clone().serve_accepted(stream, peer, handshake));
                }
                Err(e) => {
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }

    /// Serve one connection until it closes; once shutdown begins, let it
    /// finish what is in flight and close.
    pub async fn serve<S>(self, stream: S, peer: SocketAddr, scheme: &'static str)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let _gauge = ConnectionGauge::open();
        let proxy = self.proxy.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
            let proxy = proxy.clone();
            async move { proxy.handle_on(req, peer, scheme).await }
        });
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service);
        tokio::pin!(connection);
        let shutdown = self.lifecycle.shutdown_token();
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            _ = shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
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
