//! The upstream phase: the request, as the request hooks left it, goes to the
//! route's upstream. Enforces the body limit (declared length up front,
//! streamed bytes as they pass), strips hop-by-hop headers, sets the
//! forwarding headers and `Host`, streams the body, and turns the answer into
//! a [`Reply`] — with the route's error page when the upstream failed or
//! answered with a status that has one (nginx `proxy_intercept_errors`).
//! On a route with a cache, the cache phase (`cache_phase`) answers first
//! (hit, stale, or a fetch that fills the cache) and labels every reply with
//! its cache status. The request itself is built by `upstream::request`.

use std::time::Instant;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode, Version};
use http_body::Body;
use http_body_util::Either;
use tailgate_runtime::RequestHead;

use super::cache_phase::{self, CacheStep};
use super::context::RequestContext;
use super::reply::Reply;
use super::request_buffer;
use super::ActiveConfig;
use crate::body::{boxed, BoxError, LimitedBody, ProxyBody};
use crate::config::model::Route;
use crate::error::{error_page_response, ProxyError};
use crate::forwarding::{requested_upgrade, strip_hop_by_hop};
use crate::upstream::request::{client_host, upstream_request_head};
use crate::upstream::{HttpUpstreamClient, PendingUpgrade, UpstreamResponse, UpstreamTarget};

/// Send the request to the route's upstream and get its reply.
pub async fn forward<B>(
    active: &ActiveConfig,
    ctx: &mut RequestContext,
    route: &Route,
    head: &RequestHead,
    req: Request<B>,
) -> Reply
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let request_id = ctx.client.request_id.clone();
    if let Some(declared) = declared_length(req.headers()) {
        if declared > route.max_body_size {
            let err = ProxyError::BodyTooLarge {
                route: route.name.0.clone(),
                limit: route.max_body_size,
            };
            return Reply::error(&err, Some(route), &request_id);
        }
    }
    // Request buffering: the body is read whole before anything upstream
    // is contacted (the limit, a malformed or cut-short body are the
    // client's); `request_buffering = false` streams it.
    let req = if route.request_buffering && request_buffer::has_body(&req) {
        match request_buffer::buffer(req, route, ctx.body.clone()).await {
            Ok(req) => {
                ctx.body_buffered = true;
                req.map(Either::Right)
            }
            Err(err) => return Reply::error(&err, Some(route), &request_id),
        }
    } else {
        req.map(Either::Left)
    };
    // The route's response cache answers (from the cache, or by filling
    // it), or lets the request through: no cache, or not cacheable.
    // Boxed, and only on routes with a cache: its future is the largest of
    // the pipeline, and every request's future would carry (and copy) it.
    let req = if route.cache.is_some() {
        match Box::pin(cache_phase::handle(active, ctx, route, head, req)).await {
            CacheStep::Answered(reply) => {
                return cache_phase::label(ctx, route, intercept_error_status(route, reply))
            }
            CacheStep::Pass(req) => req,
        }
    } else {
        req
    };
    let result = match active.upstreams.get(&route.upstream.name) {
        Some(UpstreamTarget::Http(client)) => forward_http(client, ctx, route, head, req).await,
        Some(UpstreamTarget::Static(root)) => {
            let method = &ctx.method;
            root.serve(method, head.path(), head.query.as_deref())
                .await
                .map(|response| Reply::upstream(response, None))
        }
        None => Err(ProxyError::Internal(format!(
            "upstream {} of route {} is not built",
            route.upstream.name, route.name
        ))),
    };
    let reply = match result {
        Ok(reply) => intercept_error_status(route, reply),
        Err(err) => Reply::error(&err, Some(route), &request_id),
    };
    cache_phase::label(ctx, route, reply)
}

async fn forward_http<B>(
    client: &HttpUpstreamClient,
    ctx: &mut RequestContext,
    route: &Route,
    head: &RequestHead,
    mut req: Request<B>,
) -> Result<Reply, ProxyError>
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    // Only the upgrades the route allows (websocket by default; never h2c):
    // another goes upstream as a plain request, its Upgrade field dropped.
    let upgrade =
        requested_upgrade(req.version(), req.headers()).filter(|p| route.allows_upgrade(p));
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let host = client_host(&req);
    let (parts, body) = req.into_parts();
    let fields = ctx.edited_headers(parts.headers);
    let (uri, headers) =
        upstream_request_head(client, &ctx.client, head, fields, host, upgrade.as_ref())?;

    let body = if ctx.body_buffered {
        boxed(body)
    } else {
        boxed(LimitedBody::new(
            body,
            route.max_body_size,
            ctx.body.clone(),
        ))
    };
    let mut upstream_req = Request::new(body);
    *upstream_req.method_mut() = ctx.method.clone();
    *upstream_req.uri_mut() = uri;
    *upstream_req.version_mut() = Version::HTTP_11;
    *upstream_req.headers_mut() = headers;

    let sent = Instant::now();
    let result = client.send(upstream_req, &ctx.body).await;
    let took = sent.elapsed();
    ctx.upstream_time = Some(took);
    metrics::histogram!("tailgate_upstream_response_seconds", "upstream" => client.name().0.clone())
        .record(took.as_secs_f64());

    let UpstreamResponse { mut response, peer } = match result {
        Ok(answer) => answer,
        Err(err) => {
            ctx.upstream_addr = Some(format!("{}:{}", client.config().host, client.config().port));
            let client_side =
                ProxyError::from_client_body(&ctx.body, &route.name.0, route.max_body_size);
            return Err(client_side.unwrap_or(err));
        }
    };
    ctx.upstream_addr = Some(match peer {
        Some(peer) => peer,
        None => format!("{}:{}", client.config().host, client.config().port),
    });

    let pending_upgrade = match client_upgrade {
        Some(client_side) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
            let upstream_side = hyper::upgrade::on(&mut response);
            Some(PendingUpgrade {
                client: client_side,
                upstream: upstream_side,
            })
        }
        _ => None,
    };
    let keep_upgrade = pending_upgrade
        .as_ref()
        .and_then(|_| response.headers().get(header::UPGRADE).cloned());
    strip_hop_by_hop(response.headers_mut(), keep_upgrade.as_ref());
    Ok(Reply::upstream(response.map(boxed), pending_upgrade))
}

/// Content-Length as declared by the client, if any and valid.
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Replace an upstream response whose status has an error page on this route.
fn intercept_error_status(route: &Route, reply: Reply) -> Reply {
    if reply.upgrade.is_some() {
        return reply;
    }
    let status = reply.response.status();
    match route.error_pages.get(&status.as_u16()) {
        Some(page) => {
            let page: Response<ProxyBody> = error_page_response(status, page);
            Reply::host(page)
        }
        None => reply,
    }
}
