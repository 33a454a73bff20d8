//! The cache phase, a step at the start of the upstream phase (phase 4)
//! that drives `crate::cache` (as pingora-proxy's `proxy_cache` drives
//! pingora-cache): for a route with a cache, decide between a hit, a stale
//! answer, a revalidation, a background refresh and a fetch that fills the
//! cache; coalesce misses with the cache lock; and label the reply with its
//! [`CacheStatus`] (log record, metric, optional response header). Requests the cache does not take (methods not cached,
//! upgrades, requests with a body) pass through as `BYPASS`.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Method, Request};
use http_body::Body;
use http_body_util::BodyExt;
use tailgate_runtime::RequestHead;

use super::context::RequestContext;
use super::reply::Reply;
use super::ActiveConfig;
use crate::body::{boxed, empty_body, BoxError};
use crate::cache::condition::matches_any;
use crate::cache::entry::CachedResponse;
use crate::cache::fill::{CacheFill, FillingBody};
use crate::cache::freshness::{assess, freshen, policy_request};
use crate::cache::lock::{CacheLockGuard, LockAttempt};
use crate::cache::{status_metric, CacheStatus, ResponseCache};
use crate::config::model::{Route, RouteCache};
use crate::error::ProxyError;
use crate::forwarding::{requested_upgrade, strip_hop_by_hop};
use crate::upstream::request::{client_host, upstream_uri, Fetched, Origin};
use crate::upstream::{HttpUpstreamClient, UpstreamTarget};

/// What the cache step made of a request.
pub enum CacheStep<B> {
    /// The cache answered (from storage, or by fetching).
    Answered(Reply),
    /// Not the cache's: the upstream phase carries on with the request.
    Pass(Request<B>),
}

/// The cache step. Routes without a cache pass through untouched.
pub async fn handle<B>(
    active: &ActiveConfig,
    ctx: &mut RequestContext,
    route: &Route,
    head: &RequestHead,
    req: Request<B>,
) -> CacheStep<B>
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let Some(settings) = route.cache.clone() else {
        return CacheStep::Pass(req);
    };
    let Some(UpstreamTarget::Http(client)) = active.upstreams.get(&route.upstream.name) else {
        return CacheStep::Pass(req);
    };
    let head_only = match ctx.method {
        Method::GET if settings.cache_get => false,
        Method::HEAD if settings.cache_head => true,
        _ => {
            ctx.cache_status = Some(CacheStatus::Bypass);
            return CacheStep::Pass(req);
        }
    };
    let has_body = !req.body().is_end_stream() && req.body().size_hint().exact() != Some(0);
    if has_body || requested_upgrade(req.version(), req.headers()).is_some() {
        ctx.cache_status = Some(CacheStatus::Bypass);
        return CacheStep::Pass(req);
    }
    let host = client_host(&req);
    // The request is answered from here on: its header map is taken, not
    // copied (its body is empty, checked above).
    let request_headers = ctx.edited_headers(req.into_parts().0.headers);
    let uri = match upstream_uri(client, head) {
        Ok(uri) => uri,
        Err(err) => {
            return CacheStep::Answered(Reply::error(&err, Some(route), &ctx.client.request_id))
        }
    };
    active.cache.ensure_sweeper();
    let lookup = CacheLookup {
        cache: active.cache.clone(),
        primary: settings.key.render(head),
        no_store: matches_any(&settings.no_store, head),
        request_headers,
        settings,
        upstream: UpstreamRequest {
            client: client.clone(),
            uri,
            client_host: host,
        },
        head_only,
    };
    let bypass = matches_any(&lookup.settings.bypass, head);
    CacheStep::Answered(lookup.serve(ctx, route, bypass).await)
}

/// Record the request's cache status: the metric, and the response header
/// when the route names one. No-op for routes without a cache.
pub fn label(ctx: &RequestContext, route: &Route, mut reply: Reply) -> Reply {
    let (Some(settings), Some(status)) = (route.cache.as_deref(), ctx.cache_status) else {
        return reply;
    };
    status_metric::count(&ctx.host, status);
    if let Some(name) = &settings.status_header {
        reply
            .response
            .headers_mut()
            .insert(name.clone(), HeaderValue::from_static(status.as_str()));
    }
    reply
}

/// What the cache needs to go upstream for this request, kept until it
/// does (on a hit it never does).
struct UpstreamRequest {
    client: Arc<HttpUpstreamClient>,
    uri: http::Uri,
    client_host: Option<HeaderValue>,
}

/// One request's way through the cache.
struct CacheLookup {
    cache: Arc<ResponseCache>,
    settings: Arc<RouteCache>,
    upstream: UpstreamRequest,
    primary: String,
    request_headers: HeaderMap,
    /// A `no_store` condition holds: the answer is not stored.
    no_store: bool,
    head_only: bool,
}

impl CacheLookup {
    async fn serve(self, ctx: &mut RequestContext, route: &Route, bypass: bool) -> Reply {
        if bypass {
            ctx.cache_status = Some(CacheStatus::Bypass);
            return self.fetch(ctx, route, None, None, true).await;
        }
        let mut waited = false;
        loop {
            let now = SystemTime::now();
            let cached = self.cache.get(&self.primary, &self.request_headers);
            if let Some(entry) = cached.as_ref().filter(|e| e.is_fresh(now)) {
                ctx.cache_status = Some(CacheStatus::Hit);
                return self.reply_from(entry);
            }
            ctx.cache_status = Some(match cached {
                Some(_) => CacheStatus::Expired,
                None => CacheStatus::Miss,
            });
            // An expired entry may be served while another request (or a
            // background task) refreshes it.
            let serve_while_updating = cached.as_ref().is_some_and(|e| {
                e.may_serve_stale
                    && (self.settings.use_stale.updating || e.within_stale_while_revalidate(now))
            });
            let use_lock = self.settings.lock || cached.is_some();
            if waited || !use_lock {
                return self.fetch(ctx, route, None, cached, true).await;
            }
            match self.cache.try_lock(&self.primary) {
                LockAttempt::Acquired(guard) => {
                    if let Some(entry) = cached.as_ref().filter(|e| {
                        serve_while_updating
                            && (self.settings.background_update
                                || e.within_stale_while_revalidate(now))
                    }) {
                        ctx.cache_status = Some(CacheStatus::Updating);
                        let reply = self.reply_from(entry);
                        let entry = entry.clone();
                        let origin = self.origin(ctx);
                        tokio::spawn(self.refresh_in_background(origin, entry, guard));
                        return reply;
                    }
                    return self.fetch(ctx, route, Some(guard), cached, true).await;
                }
                LockAttempt::Busy(wait) => {
                    if let Some(entry) = cached.as_ref().filter(|_| serve_while_updating) {
                        ctx.cache_status = Some(CacheStatus::Updating);
                        return self.reply_from(entry);
                    }
                    if !self.settings.lock {
                        return self.fetch(ctx, route, None, cached, true).await;
                    }
                    if !wait.released_within(self.settings.lock_timeout).await {
                        // nginx: after the lock timeout, go upstream and do
                        // not store the answer.
                        return self.fetch(ctx, route, None, cached, false).await;
                    }
                    waited = true;
                }
            }
        }
    }

    /// The upstream request for this key, as the route forwards it.
    fn origin(&self, ctx: &RequestContext) -> Origin {
        let upstream = &self.upstream;
        Origin::new(
            &upstream.client,
            &ctx.client,
            upstream.uri.clone(),
            self.request_headers.clone(),
            upstream.client_host.clone(),
        )
    }

    /// The request as the RFC 9111 rules see it, built only where a
    /// response is assessed or freshened (never for a hit).
    fn policy_request(&self) -> http::request::Parts {
        policy_request(&self.upstream.uri, &self.request_headers)
    }

    /// A stored response as the reply.
    fn reply_from(&self, entry: &CachedResponse) -> Reply {
        Reply::upstream(
            entry.response(SystemTime::now(), self.head_only, &self.request_headers),
            None,
        )
    }

    /// Go upstream (conditionally when `stale` has validators) and answer
    /// from what comes back: the response (stored while it streams when
    /// allowed), the revalidated entry, or the stale entry when the
    /// upstream failed in a way `use_stale` covers.
    async fn fetch(
        &self,
        ctx: &mut RequestContext,
        route: &Route,
        lock: Option<CacheLockGuard>,
        stale: Option<Arc<CachedResponse>>,
        may_store: bool,
    ) -> Reply {
        let conditions = stale.as_ref().and_then(|e| e.validators());
        let origin = self.origin(ctx);
        let result = origin.fetch(conditions.as_ref()).await;
        let now = SystemTime::now();
        let fetched = match result {
            Ok(fetched) => fetched,
            Err(err) => {
                ctx.upstream_addr = Some(origin.address());
                if let Some(entry) = stale.filter(|e| self.stale_on_error(e, &err, now)) {
                    tracing::warn!(key = %self.primary, "upstream failed, serving stale: {err}");
                    ctx.cache_status = Some(CacheStatus::Stale);
                    return self.reply_from(&entry);
                }
                return Reply::error(&err, Some(route), &ctx.client.request_id);
            }
        };
        let Fetched {
            mut response,
            peer,
            took,
        } = fetched;
        ctx.upstream_time = Some(took);
        ctx.upstream_addr = Some(peer.unwrap_or_else(|| origin.address()));
        strip_hop_by_hop(response.headers_mut(), None);
        let status = response.status();

        if let Some(entry) = stale.as_ref() {
            if status == http::StatusCode::NOT_MODIFIED && conditions.is_some() {
                ctx.cache_status = Some(CacheStatus::Revalidated);
                return match self.freshen(entry, response.headers(), now) {
                    Some(fresh) => self.reply_from(&fresh),
                    None => self.reply_from(entry),
                };
            }
            if self.stale_on_status(entry, status.as_u16(), now) {
                tracing::warn!(key = %self.primary, status = status.as_u16(), "upstream error status, serving stale");
                ctx.cache_status = Some(CacheStatus::Stale);
                return self.reply_from(entry);
            }
        }

        let plan = if may_store && !self.no_store {
            assess(
                &self.settings,
                &self.policy_request(),
                status,
                response.headers(),
                now,
            )
            .map_err(|why| tracing::debug!(key = %self.primary, "not stored: {why}"))
            .ok()
        } else {
            None
        };
        // An entry larger than the whole cache could not be kept either.
        let limit = self.settings.max_entry_size.min(self.cache.max_size());
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let plan = plan.filter(|_| declared.is_none_or(|len| len <= limit));
        if plan.is_none() && stale.is_some() && status.as_u16() < 500 {
            // The upstream's current answer may not be stored: the old
            // entry must not be served any more either.
            self.cache.remove(&self.primary, &self.request_headers);
        }
        let response = match plan {
            Some(plan) => {
                let fill = CacheFill {
                    cache: self.cache.clone(),
                    primary: self.primary.clone(),
                    request_headers: self.request_headers.clone(),
                    plan,
                    limit,
                    lock,
                    buffer: BytesMut::new(),
                };
                response.map(|body| boxed(FillingBody::new(body, fill)))
            }
            None => response.map(boxed),
        };
        if self.head_only {
            // The client gets the head only; the GET body still fills the cache.
            let (parts, body) = response.into_parts();
            tokio::spawn(async move {
                let mut body = body;
                while let Some(frame) = body.frame().await {
                    if frame.is_err() {
                        break;
                    }
                }
            });
            return Reply::upstream(http::Response::from_parts(parts, empty_body()), None);
        }
        Reply::upstream(response, None)
    }

    /// Store the entry refreshed by a 304; `None` when it may no longer be
    /// stored (it is then dropped, and served this once).
    fn freshen(
        &self,
        entry: &CachedResponse,
        not_modified: &HeaderMap,
        now: SystemTime,
    ) -> Option<Arc<CachedResponse>> {
        match freshen(
            &self.settings,
            &self.policy_request(),
            entry,
            not_modified,
            now,
        ) {
            Ok(fresh) if !self.no_store => {
                let fresh = Arc::new(fresh);
                self.cache
                    .insert(&self.primary, &self.request_headers, fresh.clone());
                Some(fresh)
            }
            _ => {
                self.cache.remove(&self.primary, &self.request_headers);
                None
            }
        }
    }

    fn stale_on_error(&self, entry: &CachedResponse, err: &ProxyError, now: SystemTime) -> bool {
        let allowed = match err {
            ProxyError::UpstreamTimeout { .. } => self.settings.use_stale.timeout,
            _ => self.settings.use_stale.error,
        };
        (entry.may_serve_stale && allowed) || entry.within_stale_if_error(now)
    }

    fn stale_on_status(&self, entry: &CachedResponse, status: u16, now: SystemTime) -> bool {
        (entry.may_serve_stale && self.settings.use_stale.statuses.contains(&status))
            || (matches!(status, 500 | 502 | 503 | 504) && entry.within_stale_if_error(now))
    }

    /// nginx `proxy_cache_background_update`: refresh `entry` after the
    /// client has its stale copy. Holds the key's lock until done.
    async fn refresh_in_background(
        self,
        origin: Origin,
        entry: Arc<CachedResponse>,
        lock: CacheLockGuard,
    ) {
        let conditions = entry.validators();
        let fetched = match origin.fetch(conditions.as_ref()).await {
            Ok(fetched) => fetched,
            Err(err) => {
                tracing::warn!(key = %self.primary, "background cache update failed: {err}");
                return;
            }
        };
        let mut response = fetched.response;
        strip_hop_by_hop(response.headers_mut(), None);
        let now = SystemTime::now();
        let status = response.status();
        if status == http::StatusCode::NOT_MODIFIED && conditions.is_some() {
            self.freshen(&entry, response.headers(), now);
            return;
        }
        if status.is_server_error() {
            tracing::warn!(key = %self.primary, status = status.as_u16(), "background cache update got an error status; keeping the stale entry");
            return;
        }
        let plan = if self.no_store {
            None
        } else {
            assess(
                &self.settings,
                &self.policy_request(),
                status,
                response.headers(),
                now,
            )
            .ok()
        };
        let Some(plan) = plan else {
            self.cache.remove(&self.primary, &self.request_headers);
            return;
        };
        let limited = http_body_util::Limited::new(
            response.into_body(),
            usize::try_from(self.settings.max_entry_size).unwrap_or(usize::MAX),
        );
        match limited.collect().await {
            Ok(body) => {
                let entry = Arc::new(plan.into_entry(body.to_bytes()));
                self.cache
                    .insert(&self.primary, &self.request_headers, entry);
            }
            Err(err) => {
                tracing::debug!(key = %self.primary, "background cache update not stored: {err}");
                self.cache.remove(&self.primary, &self.request_headers);
            }
        }
        drop(lock);
    }
}
