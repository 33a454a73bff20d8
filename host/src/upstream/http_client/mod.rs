//! One HTTP(S) upstream: a keep-alive connection pool ([`KeepAlivePool`],
//! HTTP/1.1 on hyper's low-level client, connections dialled by the
//! [`UpstreamConnector`]) and the send step of the pipeline's
//! upstream phase, with its deadlines: `connect_timeout` (TCP) and
//! `tls_handshake_timeout` (a miss of either is 502) and `response_timeout`,
//! counted from the moment a connection is in hand until the response head
//! arrives (a miss is 504). An upstream with several addresses tries them in
//! the order its [`UpstreamHealth`] gives; a request that can be replayed
//! (idempotent, no body) moves on to the next address when one fails.

use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{header, HeaderValue, Method, Request, Response, Uri};
use hyper::client::conn::http1;
use tokio_rustls::TlsConnector;

use super::connector::{DialError, TailnetDialer, UpstreamConnector};
use super::health::UpstreamHealth;
use super::keepalive::{Connection, KeepAlivePool, UpstreamBody};
use super::tls;
use crate::body::{empty_body, BodyCounter, ProxyBody};
use crate::config::model::{HostHeader, HttpUpstream, UpstreamName};
use crate::error::{error_chain, ProxyError};

/// Most bytes hyper reads ahead from an upstream connection (its read
/// buffer grows up to this; hyper's default is ~400 KiB) and the largest
/// response head it accepts. A body chunk is at most this large, so a
/// client that reads slowly holds at most about this much of the upstream's
/// response in memory (with the listener's write buffer), and the rest
/// waits in the upstream's socket: backpressure, as nginx's `proxy_buffers`.
const UPSTREAM_MAX_BUF: usize = 64 * 1024;

/// The pool and settings of one HTTP(S) upstream.
#[derive(Debug, Clone)]
pub struct HttpUpstreamClient {
    name: UpstreamName,
    config: HttpUpstream,
    scheme: Scheme,
    authority: Authority,
    /// The URL's path without a trailing slash ("" for "/").
    path_prefix: String,
    connector: UpstreamConnector,
    pool: Arc<KeepAlivePool>,
    health: Arc<UpstreamHealth>,
}

/// A response head from the upstream, and where it came from.
#[derive(Debug)]
pub struct UpstreamResponse {
    pub response: Response<UpstreamBody>,
    /// The address of the connection used (`IP:PORT`, or `host:port`
    /// through SOCKS5, where only the proxy knows the address), when known.
    pub peer: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    #[error("upstream {upstream}: TLS setup: {reason}")]
    Tls { upstream: String, reason: String },
    #[error("upstream {upstream}: URL {url} has no host")]
    NoHost { upstream: String, url: String },
}

/// The parts of a bodiless idempotent request, to send it again elsewhere.
struct Replay {
    method: Method,
    uri: Uri,
    headers: http::HeaderMap,
}

impl HttpUpstreamClient {
    pub fn new(
        name: &UpstreamName,
        config: &HttpUpstream,
        dialer: &TailnetDialer,
    ) -> Result<Self, UpstreamSetupError> {
        let tls =
            tls::client_config(config.tls_verify, config.ca_file.as_deref()).map_err(|reason| {
                UpstreamSetupError::Tls {
                    upstream: name.0.clone(),
                    reason,
                }
            })?;
        let connector = UpstreamConnector::new(
            &config.endpoints,
            dialer.clone(),
            config.tls.then(|| TlsConnector::from(Arc::new(tls))),
            config.connect_timeout,
            config.tls_handshake_timeout,
        );

        let authority =
            config
                .url
                .authority()
                .cloned()
                .ok_or_else(|| UpstreamSetupError::NoHost {
                    upstream: name.0.clone(),
                    url: config.url.to_string(),
                })?;
        let scheme = if config.tls {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let path_prefix = config.url.path().trim_end_matches('/').to_string();
        Ok(HttpUpstreamClient {
            name: name.clone(),
            health: Arc::new(UpstreamHealth::new(
                name.as_str(),
                &config.health,
                &config.endpoints,
            )),
            config: config.clone(),
            scheme,
            authority,
            path_prefix,
            connector,
            pool: KeepAlivePool::new(config.endpoints.len()),
        })
    }

    pub fn name(&self) -> &UpstreamName {
        &self.name
    }

    pub fn config(&self) -> &HttpUpstream {
        &self.config
    }

    /// `host[:port]` as written in the upstream URL (its `Host` header).
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    pub fn health(&self) -> &UpstreamHealth {
        &self.health
    }

    /// The upstream URI for a request path (and query): the URL's path is
    /// prefixed. `path` must start with '/'.
    pub fn uri_for(&self, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
        self.uri_at(&self.authority, path, query)
    }

    fn uri_at(
        &self,
        authority: &Authority,
        path: &str,
        query: Option<&str>,
    ) -> Result<Uri, http::Error> {
        let mut target = String::with_capacity(self.path_prefix.len() + path.len() + 16);
        target.push_str(&self.path_prefix);
        target.push_str(path);
        if let Some(query) = query {
            target.push('?');
            target.push_str(query);
        }
        let path_and_query = PathAndQuery::try_from(target)?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(authority.clone())
            .path_and_query(path_and_query)
            .build()
    }

    /// Send a request (its URI from [`Self::uri_for`]) and wait for the
    /// response head under the upstream's deadlines. While the request body
    /// is still streaming, each `response_timeout` window in which `body`
    /// advanced extends the wait (a slow upload is not a silent upstream).
    /// With several addresses, a failed attempt of a replayable request
    /// moves on to the next one.
    pub async fn send(
        &self,
        req: Request<ProxyBody>,
        body: &BodyCounter,
    ) -> Result<UpstreamResponse, ProxyError> {
        let order = self.health.order();
        // Kept only when there is another address to send it to: a copy of
        // the header fields per request otherwise.
        let replay = (order.len() > 1 && replayable(&req)).then(|| Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
        });
        let mut first = Some(req);
        for (attempt, &i) in order.iter().enumerate() {
            let request = match (first.take(), &replay) {
                (Some(request), _) => request,
                (None, Some(parts)) => {
                    let mut request = Request::new(empty_body());
                    *request.method_mut() = parts.method.clone();
                    *request.uri_mut() = parts.uri.clone();
                    *request.headers_mut() = parts.headers.clone();
                    request
                }
                (None, None) => break,
            };
            let request = self.aim(request, i)?;
            match self.send_once(request, i, body).await {
                Ok(answer) => {
                    self.health.success(i);
                    return Ok(answer);
                }
                // A body the client cut short, sent malformed or too
                // large is not the upstream's failure.
                Err(err) if body.failed_downstream() => return Err(err),
                Err(err) => {
                    self.health.failure(i, &err);
                    let next = order.get(attempt + 1);
                    let retry = replay.is_some()
                        && matches!(
                            err,
                            ProxyError::UpstreamConnect { .. }
                                | ProxyError::UpstreamExchange { .. }
                        );
                    match next {
                        Some(&n) if retry => tracing::warn!(
                            upstream = self.name.as_str(),
                            "{err}; trying the next address, {}",
                            self.config.endpoints[n].authority
                        ),
                        _ => return Err(err),
                    }
                }
            }
        }
        Err(ProxyError::Internal(format!(
            "upstream {} has no address to try",
            self.name
        )))
    }

    /// Point `req` at address `i`: its authority, and its Host when the
    /// upstream sends its own name.
    fn aim(&self, mut req: Request<ProxyBody>, i: usize) -> Result<Request<ProxyBody>, ProxyError> {
        let Some(endpoint) = self.config.endpoints.get(i).filter(|_| i > 0) else {
            return Ok(req);
        };
        let path = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(endpoint.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| ProxyError::Internal(format!("upstream target: {e}")))?;
        *req.uri_mut() = uri;
        if matches!(self.config.host_header, HostHeader::Upstream) {
            if let Ok(host) = HeaderValue::from_str(endpoint.authority.as_str()) {
                req.headers_mut().insert(header::HOST, host);
            }
        }
        Ok(req)
    }

    /// Send `req` to address `i` on a pooled connection (or a new one) and
    /// wait for the response head. A request a reused connection closed on
    /// before it was written goes again on another connection.
    async fn send_once(
        &self,
        req: Request<ProxyBody>,
        i: usize,
        body: &BodyCounter,
    ) -> Result<UpstreamResponse, ProxyError> {
        let mut req = origin_form(req);
        loop {
            // Phase 1: a connection (pooled, or new within its deadlines).
            let mut connection = self.connection(i).await.map_err(|e| self.dial_failed(e))?;
            let response = connection.sender.try_send_request(req);
            tokio::pin!(response);
            // Phase 2: the response head within response_timeout.
            let mut seen = body.bytes();
            let result = loop {
                match tokio::time::timeout(self.config.response_timeout, &mut response).await {
                    Ok(result) => break result,
                    Err(_) if body.bytes() != seen => seen = body.bytes(),
                    Err(_) => {
                        return Err(ProxyError::UpstreamTimeout {
                            upstream: self.name.0.clone(),
                            after: self.config.response_timeout,
                        })
                    }
                }
            };
            match result {
                Ok(response) => {
                    let peer = connection.peer.to_string();
                    return Ok(UpstreamResponse {
                        response: self.pooled_response(response, i, connection),
                        peer: Some(peer),
                    });
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if connection.reused => {
                        tracing::debug!(
                            upstream = self.name.as_str(),
                            "a kept-alive connection closed before the request was sent: {}; sending it on another",
                            e.error()
                        );
                        req = unsent;
                    }
                    _ => {
                        return Err(ProxyError::UpstreamExchange {
                            upstream: self.name.0.clone(),
                            source: e.into_error().into(),
                        })
                    }
                },
            }
        }
    }

    /// A connection to address `i`: an idle one from the pool once it is
    /// ready, else a new one ([`Self::dial`]).
    async fn connection(&self, i: usize) -> Result<Connection, DialError> {
        while let Some(mut connection) = self.pool.checkout(i) {
            // One put back as its response ended may still be finishing
            // that exchange; it is ready within moments, or is dropped.
            if connection.sender.is_ready() {
                return Ok(connection);
            }
            let ready =
                tokio::time::timeout(self.config.connect_timeout, connection.sender.ready());
            if let Ok(Ok(())) = ready.await {
                return Ok(connection);
            }
        }
        // Boxed: dialling (TCP, SOCKS5, TLS) is a large future that a
        // request on a pooled connection would otherwise carry (and copy)
        // for nothing.
        Box::pin(self.dial(i)).await
    }

    /// A new connection to address `i`: dialled, then the HTTP/1.1
    /// connection task spawned.
    async fn dial(&self, i: usize) -> Result<Connection, DialError> {
        let (io, peer) = self.connector.connect(i).await?;
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(UPSTREAM_MAX_BUF)
            .handshake(io)
            .await
            .map_err(DialError::Handshake)?;
        let upstream = self.name.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(upstream = upstream.as_str(), "upstream connection: {e}");
            }
        });
        Ok(Connection {
            sender,
            peer,
            reused: false,
        })
    }

    /// The response with its body, which puts `connection` back into the
    /// pool once read; a switch of protocols keeps the connection.
    fn pooled_response(
        &self,
        response: Response<hyper::body::Incoming>,
        i: usize,
        connection: Connection,
    ) -> Response<UpstreamBody> {
        if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            return response.map(UpstreamBody::unpooled);
        }
        response.map(|body| UpstreamBody::pooled(body, &self.pool, i, connection))
    }

    fn dial_failed(&self, e: DialError) -> ProxyError {
        if let DialError::Identity(_) = e {
            metrics::counter!(
                "tailgate_upstream_identity_refused_total",
                "upstream" => self.name.0.clone()
            )
            .increment(1);
        }
        ProxyError::UpstreamConnect {
            upstream: self.name.0.clone(),
            source: e.to_string().into(),
        }
    }

    /// Probe every address with `GET path` every `interval`, marking each up
    /// or down, until the returned task is aborted.
    pub fn spawn_active_checks(&self) -> Option<tokio::task::JoinHandle<()>> {
        let check = self.config.health.active.clone()?;
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let this = self.clone();
        Some(runtime.spawn(async move {
            let mut ticks = tokio::time::interval(check.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                for i in 0..this.config.endpoints.len() {
                    let outcome = this.probe(i, &check.path, check.timeout).await;
                    match outcome {
                        Ok(()) => this.health.success(i),
                        Err(why) => this.health.failure(i, &format!("health check: {why}")),
                    }
                }
            }
        }))
    }

    async fn probe(&self, i: usize, path: &str, timeout: Duration) -> Result<(), String> {
        let authority = &self.config.endpoints[i].authority;
        let uri = self
            .uri_at(authority, path, None)
            .map_err(|e| e.to_string())?;
        let mut req = Request::get(uri)
            .body(empty_body())
            .map_err(|e| e.to_string())?;
        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            req.headers_mut().insert(header::HOST, host);
        }
        let exchange = async {
            let mut connection = self.connection(i).await.map_err(|e| e.to_string())?;
            let response = connection
                .sender
                .send_request(origin_form(req))
                .await
                .map_err(|e| error_chain(&e))?;
            Ok::<_, String>(self.pooled_response(response, i, connection).status())
        };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => Err(format!("no answer within {timeout:?}")),
            Ok(Err(why)) => Err(why),
            Ok(Ok(status)) if status.is_success() || status.is_redirection() => Ok(()),
            Ok(Ok(status)) => Err(format!("answered {status}")),
        }
    }
}

/// The request as it goes on the wire: `Host` from the target when the
/// request has none, and the target in origin form (`/path?query`).
fn origin_form(mut req: Request<ProxyBody>) -> Request<ProxyBody> {
    let target = std::mem::take(req.uri_mut()).into_parts();
    if !req.headers().contains_key(header::HOST) {
        if let Some(host) = target
            .authority
            .as_ref()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            req.headers_mut().insert(header::HOST, host);
        }
    }
    *req.uri_mut() = match target.path_and_query {
        Some(path) => Uri::from(path),
        None => Uri::from_static("/"),
    };
    req
}

/// Idempotent (RFC 9110 9.2.2) and without a body: safe to send again.
fn replayable(req: &Request<ProxyBody>) -> bool {
    use http_body::Body as _;
    let idempotent = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    idempotent
        && req.body().is_end_stream()
        && req
            .extensions()
            .get::<hyper::upgrade::OnUpgrade>()
            .is_none()
        && !req.headers().contains_key(header::UPGRADE)
}

#[cfg(test)]
mod tests;
