//! The accept loop and per-connection serving: each accepted socket gets its
//! own task running hyper-util's auto connection (HTTP/1.1 with upgrades,
//! or HTTP/2 when the client opens with the h2 preface — h2c prior
//! knowledge), with every request handed to the `Proxy`. A failing
//! connection only ends itself; accept errors are logged and retried.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

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
    graceful: Arc<GracefulShutdown>,
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
    pub fn new(proxy: Proxy, graceful: Arc<GracefulShutdown>) -> Self {
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
            graceful,
        }
    }

    /// Accept connections forever (until the task is aborted).
    pub async fn accept_loop(self, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let watcher = self.graceful.watcher();
                    tokio::spawn(self.clone().serve(stream, peer, watcher));
                }
                Err(e) => {
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }

    /// Serve one connection until it closes.
    pub async fn serve<S>(self, stream: S, peer: SocketAddr, watcher: Watcher)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let _gauge = ConnectionGauge::open();
        let proxy = self.proxy.clone();
        let service = hyper::service::service_fn(move |req| {
            let proxy = proxy.clone();
            async move { proxy.handle(req, peer).await }
        });
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        if let Err(e) = watcher.watch(connection).await {
            tracing::debug!(%peer, "connection ended: {e}");
        }
    }
}
