//! Where requests enter: binds every `server.listen` address, accepts
//! connections and serves each with hyper (HTTP/1.1, HTTP/2 and h2c prior
//! knowledge, detected per connection), handing every request to the
//! [`Proxy`](crate::pipeline::Proxy) service. Beside it run the admin
//! listener and the reload triggers (`crate::reload`). Runs until
//! SIGINT/SIGTERM, then drains ([`Lifecycle`]): `/healthz` answers 503, no
//! new connections are accepted, requests and WebSockets in flight finish
//! (bounded by `server.drain_timeout`), the access log and the registered
//! flush hooks are flushed, and `run` returns.

mod connection_table;
mod handshake;
mod listener;
mod listener_set;
mod parking;
pub mod proxy_protocol;
mod signal;
mod summary;
mod timeouts;
mod woken;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tailgate_runtime::Runtime;
use tokio_util::sync::CancellationToken;

use crate::access_log::LogWriters;
use crate::admin::{self, AdminBindError, AdminState};
use crate::config::model::Config;
use crate::lifecycle::Lifecycle;
use crate::pipeline::{ActiveConfig, Proxy};
use crate::plugin_chain::PluginChains;
use crate::reload::{self, triggers, ReloadError, Reloader};
use crate::telemetry::Telemetry;
use crate::upstream::UpstreamSetupError;

pub use connection_table::raise_fd_limit;
pub use handshake::ConnectionHandshake;
pub use listener::ConnectionServer;
pub use listener_set::{ListenerChanges, ListenerSet, PreparedListeners};

/// Longest wait for the flush hooks (telemetry queues) after the drain.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the access log's last lines to reach stdout.
const ACCESS_LOG_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Admin(#[from] AdminBindError),
    #[error(transparent)]
    Upstream(#[from] UpstreamSetupError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsSetupError),
    #[error("server.listen is empty: nothing to serve")]
    NoListener,
    #[error("opening the access log file {}: {source}", path.display())]
    AccessLogFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// A start-up step no other variant names (they cannot fail at
    /// start-up: the config and plugins are loaded before `run`).
    #[error(transparent)]
    Startup(Box<ReloadError>),
}

impl ServerError {
    /// Start-up's reload from the empty state failed: the error as start-up
    /// reports it (without the reload's config-path prefix).
    fn from_startup(err: ReloadError) -> Self {
        match err {
            ReloadError::Upstream { source, .. } => ServerError::Upstream(source),
            ReloadError::Listen { source, .. } => source,
            ReloadError::AccessLog { file, source, .. } => {
                ServerError::AccessLogFile { path: file, source }
            }
            other => ServerError::Startup(Box::new(other)),
        }
    }
}

/// Serve `config` until a shutdown signal. Prints `listening on http://ADDR`
/// (`https://` for `[tls]` listeners) to stderr for every bound listener and
/// `admin api on http://ADDR` for the admin listener (with the real port for
/// `:0`). Reloads re-read `config.source`, load plugins on the same
/// `runtime` and reconfigure the pushers of `telemetry`.
pub async fn run(
    config: Config,
    chains: PluginChains,
    runtime: Arc<Runtime>,
    telemetry: Arc<Telemetry>,
) -> Result<(), ServerError> {
    if config.server.listen.is_empty() {
        return Err(ServerError::NoListener);
    }
    // Listen for the signals before announcing the listeners, so a stop
    // request right after start-up is a clean shutdown too.
    let shutdown = shutdown_signal();
    let lifecycle = Lifecycle::new();
    let summary = summary::StartupSummary::new(&config, &chains);
    let log_writers = LogWriters::default();
    // Start-up is a reload from the empty state: the first config's
    // active bundle, listeners and access log are built and put into
    // service by the reloader, as every later config's are.
    let proxy = Proxy::new(ActiveConfig::empty(&config.source)).with_lifecycle(lifecycle.clone());
    let server = ConnectionServer::new(proxy.clone(), lifecycle.clone());
    let listeners = Arc::new(ListenerSet::new(server));
    let reloader = Arc::new(Reloader::new(
        config.source.clone(),
        proxy.clone(),
        runtime.clone(),
        listeners.clone(),
        telemetry,
        log_writers.clone(),
    ));
    let admin_listen = config.admin.listen;
    // Watch and listen for SIGHUP before anything is announced: a save or
    // a SIGHUP right after the `listening on` lines must not fall between
    // two steps of start-up.
    let sighup = triggers::SighupListener::register();
    let file_watch = triggers::FileWatch::start(&reload::watched_files_of(&config.source, &config))
        .map_err(|e| tracing::warn!("{e}; reload with SIGHUP or POST /reload instead"))
        .ok();
    let prepared = reloader
        .prepare(config, chains)
        .await
        .map_err(ServerError::from_startup)?;
    let admin_listener = admin::bind(admin_listen).await?;
    reloader.commit(prepared).await;
    let admin_local = admin_listener.local_addr().unwrap_or(admin_listen);
    summary.print(&listeners.local_addrs(), admin_local);

    let admin_stop = CancellationToken::new();
    let admin_routes = admin::admin_routes(&AdminState {
        reloader: reloader.clone(),
        lifecycle: lifecycle.clone(),
        cache: proxy.active().cache.clone(),
        bans: runtime.bans(),
        max_ban_key_bytes: runtime.state_limits().max_key_bytes,
    });
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        Arc::new(admin_routes),
        admin_stop.clone(),
    ));
    let mut reload_triggers = tokio::task::JoinSet::new();
    reload_triggers.spawn(sighup.reload_until(reloader.clone(), lifecycle.shutdown_token()));
    if let Some(file_watch) = file_watch {
        let watch = file_watch.spawn(reloader.clone(), lifecycle.shutdown_token());
        reload_triggers.spawn(async move {
            let _ = watch.await;
        });
    }
    drop(reloader);

    shutdown.await;
    drain(&lifecycle, &listeners, &proxy).await;
    // Reload triggers end on the shutdown token; the admin API served
    // `/healthz` (503) and `/metrics` through the drain and stops now.
    // Each holds the proxy, whose access-log handles must go before the
    // log writers can finish.
    while reload_triggers.join_next().await.is_some() {}
    admin_stop.cancel();
    let _ = admin_task.await;
    drop(listeners);
    drop(proxy);
    // The plugin runtime outlives every request that could call into it.
    drop(runtime);
    // Each log writer ends once the last request's log line is written.
    if !log_writers.finish(ACCESS_LOG_FLUSH_TIMEOUT).await {
        tracing::warn!("access log not flushed within {ACCESS_LOG_FLUSH_TIMEOUT:?}");
    }
    lifecycle.flush(FLUSH_TIMEOUT).await;
    tracing::info!("shut down");
    Ok(())
}

/// Stop accepting, fail health checks, and wait (bounded by the active
/// config's `drain_timeout`) for requests and tunnels in flight.
async fn drain(lifecycle: &Lifecycle, listeners: &ListenerSet, proxy: &Proxy) {
    let timeout = proxy.active().config.server.drain_timeout;
    lifecycle.begin_drain();
    listeners.close_all().await;
    tracing::info!(
        drain_timeout = ?timeout,
        "shutting down: no new connections; draining open ones"
    );
    let left = lifecycle.wait_drained(timeout).await;
    if left > 0 {
        tracing::warn!("{left} connections still open after {timeout:?}; closing them");
    } else {
        tracing::info!("drained: every request finished");
    }
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
