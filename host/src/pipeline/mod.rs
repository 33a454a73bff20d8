//! The request pipeline: every request goes through the same phases, in this
//! fixed order (pingora style; also drawn in `docs/pipeline.md`):
//!
//! ```text
//!  request in (server)
//!     |
//!  0. health      /healthz -> 200 "ok" (503 draining)  (no route, no log)
//!  1. path        host checked, path normalised once   bad host/path -> 400
//!     route       Host, then path -> Route            unknown host -> status | close (444)
//!     |                                               no path      -> 404
//!     |                                   (logged via `[access_log] plugins`)
//!  2. head        RequestHead: client IP, scheme, request id (trusted-proxy rules)
//!     |           an `internal` path -> 404 ----------------------------+
//!  3. request     chain.on_request: header/path edits, vars, delay_ms (sleep)
//!     hooks         Respond  -> plugin's answer ------------------------+
//!     |             Failed   -> host-made 500 --------------------------+
//!  4. upstream    body limit (Content-Length, then counted) -> 413 -----+
//!     |           cache phase (route with a cache): hit, stale, or a    |
//!     |             fetch that fills the cache (`cache_phase`)          |
//!     |           hop-by-hop strip, X-Forwarded-*, Host, x-request-id   |
//!     |           HTTP(S) pool or static files; streams both ways       |
//!     |           connect fail -> 502, head timeout -> 504 (error page) |
//!     |           upstream status with an error page -> the page        |
//!     |           plugin answers, refusals: a page per error_pages_for  |
//!  5. response    chain.on_response (host_generated = true for host-made)
//!     hooks         Err -> host-made 500
//!  6. send        status + headers now, body streamed (101 -> tunnel)
//!  7. log         ALWAYS, when the body ends or is dropped (tunnel: when it
//!                 closes): LogRecord -> chain.on_log -> access log; metrics
//! ```
//!
//! Phases 1–3 and 5 never fail the connection: any failure becomes a
//! [`ProxyError`](crate::error::ProxyError), turned into a response in one
//! place. Each request loads the [`ActiveConfig`] once at its start and uses
//! that same bundle (routes, plugin chains, upstream pools) to its end, so a
//! config swap never mixes two configs inside one request.

mod cache_phase;
pub mod context;
mod https_redirect;
pub mod log_phase;
pub(crate) mod log_thread;
mod logged_body;
pub(crate) mod reply;
mod request_buffer;
mod response_phase;
pub(crate) mod upstream_phase;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use tailgate_runtime::{HookSet, RequestHead};

use self::context::RequestContext;
use self::log_phase::{PendingLog, CLOSED_WITHOUT_RESPONSE};
use self::reply::Reply;
use crate::access_log::AccessLog;
use crate::body::{full_body, BoxError, ProxyBody};
use crate::cache::ResponseCache;
use crate::config::model::{Config, UnknownHost};
use crate::error::ProxyError;
use crate::forwarding::ClientInfo;
use crate::lifecycle::Lifecycle;
use crate::plugin_chain::{PluginChains, RequestDecision};
use crate::router::{request_host, RouteMatch, RouteTable};
use crate::upstream::{UpstreamPool, UpstreamSetupError};

/// The health-check path, answered before routing on every host.
pub const HEALTH_PATH: &str = "/healthz";

/// The scheme of a request given to [`Proxy::handle`]: plain HTTP (TLS ends
/// at the edge in front of us; `[tls]` listeners call
/// [`Proxy::handle_on`] with `https`).
const LISTENER_SCHEME: &str = "http";

/// Everything a request needs from the current config, swapped as one.
pub struct ActiveConfig {
    pub config: Arc<Config>,
    pub routes: RouteTable,
    pub chains: Arc<PluginChains>,
    pub upstreams: UpstreamPool,
    /// The response cache; one per process: [`Proxy::swap`] hands it on.
    pub cache: Arc<ResponseCache>,
    /// Where this config's requests log (`[access_log]`, Loki).
    pub access_log: AccessLog,
}

impl ActiveConfig {
    pub fn new(
        config: Arc<Config>,
        chains: Arc<PluginChains>,
        access_log: AccessLog,
    ) -> Result<Self, UpstreamSetupError> {
        Ok(ActiveConfig {
            routes: RouteTable::new(&config),
            upstreams: UpstreamPool::new(&config)?,
            cache: ResponseCache::new(&config.cache),
            config,
            chains,
            access_log,
        })
    }
}

impl ActiveConfig {
    /// The running state before start-up: the config of an empty file
    /// read from `source` (no routes, no upstreams). Nothing is served from
    /// it (no listener is open yet), so its access log has no reader; the
    /// first config goes into service over it as a reload does
    /// (`crate::reload`), which also starts the access log.
    pub fn empty(source: &Path) -> Self {
        let config = Arc::new(crate::config::empty(source));
        ActiveConfig {
            routes: RouteTable::new(&config),
            upstreams: UpstreamPool::default(),
            cache: ResponseCache::new(&config.cache),
            chains: Arc::new(PluginChains::from_chains(std::iter::empty())),
            access_log: AccessLog::channel(1).0,
            config,
        }
    }
}

/// The connection was dropped without a response (unknown host, `close`):
/// returned to hyper as the service error, which closes an HTTP/1.1
/// connection without writing anything and resets an HTTP/2 stream.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("connection closed without a response (unknown host)")]
pub struct CloseConnection;

/// The proxy as a service: one request in, one response out. Cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    active: Arc<ArcSwap<ActiveConfig>>,
    /// Draining flag (`/healthz` 503) and where WebSocket tunnels run.
    lifecycle: Lifecycle,
}

impl Proxy {
    pub fn new(active: ActiveConfig) -> Self {
        Proxy {
            active: Arc::new(ArcSwap::from_pointee(active)),
            lifecycle: Lifecycle::new(),
        }
    }

    /// Share the server's lifecycle (draining state, tunnel tracking).
    pub fn with_lifecycle(mut self, lifecycle: Lifecycle) -> Self {
        self.lifecycle = lifecycle;
        self
    }

    /// The bundle new requests start with.
    pub fn active(&self) -> Arc<ActiveConfig> {
        self.active.load_full()
    }

    /// Make `next` the bundle for new requests; requests in flight finish
    /// with the one they started with. Returns the previous bundle.
    /// The response cache carries over, resized to `next`'s `[cache]`.
    pub fn swap(&self, mut next: ActiveConfig) -> Arc<ActiveConfig> {
        next.cache = self.active.load().cache.clone();
        next.cache.reconfigure(&next.config.cache);
        self.active.swap(Arc::new(next))
    }

    /// Run one request from `peer` through the pipeline.
    pub async fn handle<B>(
        &self,
        req: Request<B>,
        peer: SocketAddr,
    ) -> Result<Response<ProxyBody>, CloseConnection>
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        self.handle_on(req, peer, LISTENER_SCHEME).await
    }

    /// [`Proxy::handle`] for a request that came in on a listener of
    /// `scheme` (`"https"` on the TLS listeners).
    pub async fn handle_on<B>(
        &self,
        req: Request<B>,
        peer: SocketAddr,
        scheme: &'static str,
    ) -> Result<Response<ProxyBody>, CloseConnection>
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let start = Instant::now();
        // 0. health
        if req.uri().path() == HEALTH_PATH {
            return Ok(health_response(self.lifecycle.is_draining()));
        }
        let active = self.active.load_full();
        let client = ClientInfo::resolve(peer, req.headers(), &active.config.server, scheme);
        // The log keeps the URI as received (nginx's $request_uri).
        let mut ctx = RequestContext::new(&req, request_host(&req), client, start);
        let mut req = req;

        // 1. host and path: one checked host, and from here on one
        // normalised path for every phase.
        let checked = crate::router::check_host(&req)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                crate::request_path::normalize_uri(req.uri_mut()).map_err(|e| e.to_string())
            });
        if let Err(reason) = checked {
            // No route took it: `[access_log] plugins` shape its line.
            ctx.chain = active.chains.unrouted();
            ctx.keep_logged_fields(&req);
            let err = ProxyError::BadRequest(reason);
            let reply = Reply::error(&err, None, &ctx.client.request_id);
            return Ok(response_phase::finish(
                ctx,
                None,
                reply,
                &active.access_log,
                &self.lifecycle,
            )
            .await);
        }

        // 1. route
        let route_match = active.routes.resolve(&ctx.host, req.uri().path());
        let route = match route_match {
            RouteMatch::Found(route) => route,
            RouteMatch::UnknownHost | RouteMatch::NoPathMatch => {
                let known_host = matches!(route_match, RouteMatch::NoPathMatch);
                let (ctx, reply) = unrouted(&active, ctx, &req, known_host)?;
                return Ok(response_phase::finish(
                    ctx,
                    None,
                    reply,
                    &active.access_log,
                    &self.lifecycle,
                )
                .await);
            }
        };
        ctx.chain = active.chains.for_route(&route.name);
        ctx.route = Some(route.clone());

        // 2. head, 3. request hooks, 4. upstream
        // The fields as a list: for the route's hooks and its cache key only.
        let hooked = ctx.chain.as_ref().is_some_and(|chain| {
            chain.has_hook(HookSet::REQUEST) || chain.has_hook(HookSet::RESPONSE)
        });
        let mut head = ctx.request_head(&req, hooked || route.cache.is_some());
        let reply = if route.https_redirect && ctx.client.scheme == "http" {
            let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
            Reply::host(https_redirect::redirect_to_https(
                &ctx.method,
                &ctx.host,
                target,
            ))
        } else if route.internal.iter().any(|p| p == req.uri().path()) {
            // nginx `internal`: only the proxy serves it (as an error page).
            let err = ProxyError::InternalPath {
                route: route.name.to_string(),
                path: req.uri().path().to_string(),
            };
            Reply::error(&err, Some(&route), &ctx.client.request_id)
        } else {
            match request_hooks(&mut ctx, &mut head).await {
                Some(answer) => answer,
                None => upstream_phase::forward(&active, &mut ctx, &route, &head, req).await,
            }
        };
        // 5. response hooks, then 6. send and 7. log as the body goes out
        Ok(response_phase::finish(
            ctx,
            Some(&mut head),
            reply,
            &active.access_log,
            &self.lifecycle,
        )
        .await)
    }
}

/// Phase 1's answer when no route took the request: the unknown-host
/// status or a closed connection (444), or 404 for a path no route of a
/// `known_host` has. Logged like every request, its line shaped by
/// `[access_log] plugins` as a route's chain shapes its own.
fn unrouted<B>(
    active: &ActiveConfig,
    mut ctx: RequestContext,
    req: &Request<B>,
    known_host: bool,
) -> Result<(RequestContext, Reply), CloseConnection> {
    ctx.chain = active.chains.unrouted();
    ctx.keep_logged_fields(req);
    let err = if known_host {
        ProxyError::NoRoute {
            host: ctx.host.clone(),
            path: req.uri().path().to_string(),
        }
    } else {
        let status = match active.config.server.unknown_host {
            UnknownHost::Status(status) => status,
            UnknownHost::Close => {
                PendingLog::new(
                    ctx,
                    CLOSED_WITHOUT_RESPONSE,
                    vec![],
                    active.access_log.clone(),
                )
                .emit(0);
                return Err(CloseConnection);
            }
        };
        ProxyError::UnknownHost {
            host: ctx.host.clone(),
            status,
        }
    };
    let reply = Reply::error(&err, None, &ctx.client.request_id);
    Ok((ctx, reply))
}

/// Phase 3: the route's request hooks. `Some` is an answer that skips the
/// upstream (a plugin's own, or a host-made 500 when a plugin failed).
async fn request_hooks(ctx: &mut RequestContext, head: &mut RequestHead) -> Option<Reply> {
    let chain = ctx.chain.clone().filter(|c| c.has_hook(HookSet::REQUEST))?;
    match chain.on_request(head).await {
        RequestDecision::Continue {
            delay_ms,
            vars,
            header_edits,
        } => {
            ctx.vars.extend(vars);
            ctx.request_header_edits = header_edits;
            if delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(u64::from(delay_ms))).await;
            }
            None
        }
        RequestDecision::Respond(answer, vars) => {
            ctx.vars.extend(vars);
            Some(Reply::immediate(answer, ctx.route.as_deref()))
        }
        RequestDecision::Failed { plugin, fault } => {
            let err = ProxyError::PluginFailed {
                route: ctx.route_name().to_string(),
                plugin,
                fault,
            };
            Some(Reply::error(
                &err,
                ctx.route.as_deref(),
                &ctx.client.request_id,
            ))
        }
    }
}

/// 200 "ok", or 503 "draining" once shutdown began (so the edge stops
/// sending new requests here).
fn health_response(draining: bool) -> Response<ProxyBody> {
    let (status, body) = if draining {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ok")
    };
    let mut resp = Response::new(full_body(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests;
