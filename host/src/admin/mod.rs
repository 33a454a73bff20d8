//! The admin listener: a small HTTP/1.1 server beside the proxy (default
//! `127.0.0.1:12345`, `[admin] listen`), never on the public path. It answers
//! operator endpoints (`POST /reload`, `/healthz`, `/bans`, and those other
//! modules register: `/metrics`, cache purge, ...). Requests for the public routes
//! never come here; nothing here runs the request pipeline.
//!
//! Adding an endpoint: one `.route(...)` line in [`admin_routes`], with the
//! handler in the module that owns the feature (and, if it needs state, a
//! field in [`AdminState`]).

pub mod bans;
pub mod client;
mod router;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::lifecycle::Lifecycle;
use crate::reload::Reloader;

pub use router::{
    handler, json_response, text_response, AdminHandler, AdminRequest, AdminResponse, AdminRouter,
};

/// Largest request body an admin endpoint accepts.
pub const MAX_ADMIN_BODY: usize = 1 << 20;

/// What the admin endpoints act on. Add a field for a new endpoint's state.
#[derive(Clone)]
pub struct AdminState {
    pub reloader: Arc<Reloader>,
    pub lifecycle: Lifecycle,
    /// The response cache (`POST /cache/purge`); kept across reloads.
    pub cache: Arc<crate::cache::ResponseCache>,
    /// The plugin runtime's ban list (`/bans`); kept across reloads.
    pub bans: tailgate_runtime::BanView,
    /// Longest jail or key `POST /bans` takes (`[state] max_key_size`).
    pub max_ban_key_bytes: usize,
}

/// Every admin endpoint, one line each.
pub fn admin_routes(state: &AdminState) -> AdminRouter {
    let bans = bans::endpoints(state.bans.clone(), state.max_ban_key_bytes);
    AdminRouter::new()
        .route(
            Method::GET,
            "/healthz",
            health_endpoint(state.lifecycle.clone(), state.bans.clone()),
        )
        .route(
            Method::POST,
            "/reload",
            crate::reload::endpoint(state.reloader.clone()),
        )
        .route(
            Method::GET,
            crate::telemetry::metrics_endpoint::METRICS_PATH,
            crate::telemetry::metrics_endpoint::endpoint(),
        )
        .route(
            Method::POST,
            crate::cache::purge::PURGE_PATH,
            crate::cache::purge::endpoint(state.cache.clone()),
        )
        .route(Method::GET, bans::BANS_PATH, bans.list)
        .route(Method::POST, bans::BANS_PATH, bans.add)
        .route_prefix(Method::DELETE, bans::BAN_PREFIX, bans.remove)
}

/// `GET /healthz` on the admin listener: 200 "ok" while serving, 503
/// "draining" once shutdown began (same answer as the public `/healthz`).
/// With a shared state backend a second line says how it is
/// (`state backend redis (exact): up` or `... degraded, deciding locally`);
/// a degraded backend keeps the 200: requests are still served.
fn health_endpoint(lifecycle: Lifecycle, bans: tailgate_runtime::BanView) -> AdminHandler {
    router::handler(move |_req| {
        let draining = lifecycle.is_draining();
        let backend = bans.backend_health().map(|h| {
            let how = if h.up {
                "up".to_owned()
            } else {
                format!("degraded, deciding locally ({} errors)", h.errors)
            };
            format!("state backend {} ({}): {how}\n", h.backend, h.mode)
        });
        async move {
            let backend = backend.unwrap_or_default();
            if draining {
                text_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("draining\n{backend}"),
                )
            } else {
                text_response(StatusCode::OK, format!("ok\n{backend}"))
            }
        }
    })
}

#[derive(Debug, thiserror::Error)]
#[error("admin listener on {addr}: {source}")]
pub struct AdminBindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Bind the admin listener. Prints `admin api on http://ADDR` to stderr
/// (with the real port for `:0`).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, AdminBindError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| AdminBindError { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| AdminBindError { addr, source })?;
    eprintln!("admin api on http://{local}");
    tracing::info!(%local, "admin api listening");
    Ok(listener)
}

/// Serve admin requests on `listener` until `stop` is cancelled; open
/// admin connections are then dropped (admin calls are short).
pub async fn serve(listener: TcpListener, router: Arc<AdminRouter>, stop: CancellationToken) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("admin api: accepting a connection: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let router = router.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let router = router.clone();
                async move { Ok::<_, std::convert::Infallible>(router.dispatch(req).await) }
            });
            let served = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .http1_only()
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(%peer, "admin connection ended: {e}");
            }
        });
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}
