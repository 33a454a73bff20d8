//! Where requests enter: binds every `server.listen` address, accepts
//! connections and serves each with hyper (HTTP/1.1, HTTP/2 and h2c prior
//! knowledge, detected per connection), handing every request to the
//! [`Proxy`](crate::pipeline::Proxy) service. Runs until SIGINT/SIGTERM,
//! then stops accepting and lets open connections finish (bounded).

mod listener;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tailgate_runtime::Runtime;
use tokio::net::TcpListener;

use crate::access_log::AccessLog;
use crate::config::model::Config;
use crate::pipeline::{ActiveConfig, Proxy};
use crate::plugin_chain::PluginChains;
use crate::upstream::UpstreamSetupError;

pub use listener::ConnectionServer;

/// How long open connections may run on after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Upstream(#[from] UpstreamSetupError),
    #[error("server.listen is empty: nothing to serve")]
    NoListener,
}

/// Serve `config` until a shutdown signal. Prints `listening on http://ADDR`
/// to stderr for every bound listener (with the real port for `:0`).
pub async fn run(
    config: Arc<Config>,
    chains: Arc<PluginChains>,
    runtime: Arc<Runtime>,
) -> Result<(), ServerError> {
    if config.server.listen.is_empty() {
        return Err(ServerError::NoListener);
    }
    // Listen for the signals before announcing the listeners, so a stop
    // request right after start-up is a clean shutdown too.
    let shutdown = shutdown_signal();
    let active = ActiveConfig::new(config.clone(), chains)?;
    let (access_log, log_writer) = AccessLog::stdout();
    let proxy = Proxy::new(active, access_log);

    let mut listeners = Vec::with_capacity(config.server.listen.len());
    for &addr in &config.server.listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        eprintln!("listening on http://{local}");
        tracing::info!(%local, "listening");
        listeners.push(listener);
    }

    let graceful = Arc::new(GracefulShutdown::new());
    let server = ConnectionServer::new(proxy, graceful.clone());
    let mut accepting = tokio::task::JoinSet::new();
    for listener in listeners {
        accepting.spawn(server.clone().accept_loop(listener));
    }
    drop(server);
    shutdown.await;
    tracing::info!("shutting down: no new connections; draining open ones");
    accepting.shutdown().await;
    match Arc::try_unwrap(graceful) {
        Ok(graceful) => {
            if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
                .await
                .is_err()
            {
                tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
            }
        }
        Err(_) => tracing::warn!("could not drain connections: accept loops still running"),
    }
    // The plugin runtime outlives every request that could call into it.
    drop(runtime);
    // The log writer ends once the last request's log line is queued.
    let _ = tokio::time::timeout(Duration::from_secs(2), log_writer).await;
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what Fly sends on stop). The
/// handlers are installed when this is called, not when it is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    #[cfg(unix)]
    let int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    async move {
        #[cfg(unix)]
        {
            let term = async {
                match term {
                    Ok(mut term) => {
                        term.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            let int = async {
                match int {
                    Ok(mut int) => {
                        int.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = term => {}
                _ = int => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
