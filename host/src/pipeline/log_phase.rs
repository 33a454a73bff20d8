//! The log phase, the pipeline's last: it always runs — for proxied
//! requests, plugin answers, host-made errors, unknown hosts and upgrades —
//! once the response body has finished streaming (or was abandoned), so
//! `bytes_sent` and `request_time` are true. Records the request metrics,
//! then hands the exchange to the log thread (`log_thread`), which builds
//! the WIT `LogRecord` and its access-log line there: the route's log hooks
//! shape it, or it is the default line.

use std::sync::{Arc, LazyLock};
use std::time::UNIX_EPOCH;

use dashmap::DashMap;
// Keys are (method, status).
use foldhash::fast::RandomState;
use metrics::{Counter, Histogram};
use tailgate_runtime::{Header, LogRecord, Method, Protocol, Scheme};

use super::context::RequestContext;
use super::log_thread::{self, LogJob};
use crate::access_log::AccessLog;
use crate::plugin_chain::RouteChain;
use crate::telemetry::by_host::ByHost;

/// Status logged for a connection closed without a response (nginx 444).
pub const CLOSED_WITHOUT_RESPONSE: u16 = 444;

/// A finished (or finishing) exchange waiting for its byte count.
pub struct PendingLog {
    ctx: RequestContext,
    status: u16,
    response_headers: Vec<Header>,
    access_log: AccessLog,
}

impl PendingLog {
    pub fn new(
        ctx: RequestContext,
        status: u16,
        response_headers: Vec<Header>,
        access_log: AccessLog,
    ) -> Self {
        PendingLog {
            ctx,
            status,
            response_headers,
            access_log,
        }
    }

    /// Add request bytes read outside the body (an upgraded connection's).
    pub fn add_received(&self, bytes: u64) {
        self.ctx.body.add(bytes);
    }

    /// Run the log phase with the response body's final size: count the
    /// request, then hand the exchange to the log thread (`log_thread`),
    /// which builds its record and line there, off the worker.
    pub fn emit(self, bytes_sent: u64) {
        let finished = Finished {
            request_time: self.ctx.start.elapsed().as_secs_f64(),
            bytes_sent,
        };
        record_metrics(&self.ctx, self.status, finished);
        log_thread::submit(LogJob {
            pending: self,
            finished,
        });
    }

    /// The route's chain (its log hook, if any, shapes the line).
    pub(super) fn chain(&self) -> Option<&Arc<RouteChain>> {
        self.ctx.chain.as_ref()
    }

    pub(super) fn access_log(&self) -> &AccessLog {
        &self.access_log
    }

    /// The record of the exchange; the request's strings are moved into
    /// it, not copied (the context ends here).
    pub(super) fn into_record(self, finished: Finished) -> LogRecord {
        let PendingLog {
            ctx,
            status,
            response_headers,
            access_log: _,
        } = self;
        let route = ctx.route_name().to_string();
        LogRecord {
            time_unix_ms: ctx
                .started_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            client_ip: ctx.client.client_ip.into(),
            peer_ip: ctx.client.peer.ip().into(),
            peer_port: ctx.client.peer.port(),
            method: Method::from(&ctx.method),
            scheme: Scheme::from_text(&ctx.client.scheme),
            host: Some(ctx.host),
            uri: Some(ctx.uri),
            protocol: Protocol::from(ctx.version),
            status,
            bytes_sent: finished.bytes_sent,
            bytes_received: ctx.body.bytes(),
            request_time: finished.request_time,
            upstream_response_time: ctx.upstream_time.map(|d| d.as_secs_f64()),
            upstream_addr: ctx.upstream_addr,
            cache_status: ctx.cache_status.map(crate::cache::CacheStatus::to_wire),
            route: Some(route),
            request_id: Some(ctx.client.request_id),
            user_agent: Some(ctx.user_agent),
            referer: Some(ctx.referer),
            http_host: Some(ctx.http_host),
            request_headers: Some(ctx.request_headers),
            response_headers: Some(response_headers),
            vars: Some(ctx.vars),
            path: Some(ctx.path),
        }
    }
}

/// What the exchange's end fixed: the body's size and the time taken, as the
/// log phase ran (a record built later on the log thread keeps them).
#[derive(Debug, Clone, Copy)]
pub(super) struct Finished {
    pub request_time: f64,
    pub bytes_sent: u64,
}

/// Methods with their own `method` label; others are "OTHER".
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];
/// The host label of an unrouted request.
const UNROUTED: &str = "_unrouted";

/// Request counters and histograms. Labels stay low-cardinality: the host
/// only when a route matched, the method only when standard.
fn record_metrics(ctx: &RequestContext, status: u16, finished: Finished) {
    let host = if ctx.route.is_some() {
        ctx.host.as_str()
    } else {
        UNROUTED
    };
    let method = STANDARD_METHODS
        .iter()
        .find(|m| **m == ctx.method.as_str())
        .copied()
        .unwrap_or("OTHER");
    REQUEST_SERIES.with(
        host,
        || HostSeries::register(host),
        |series| series.record(method, status, finished),
    );
}

/// Registered handles of the request metrics, by host label.
static REQUEST_SERIES: LazyLock<ByHost<HostSeries>> = LazyLock::new(ByHost::default);

/// The series of one host label.
struct HostSeries {
    host: String,
    duration: Histogram,
    response_bytes: Counter,
    /// `tailgate_http_requests_total` by (method, status).
    requests: DashMap<(&'static str, u16), Counter, RandomState>,
}

impl HostSeries {
    fn register(host: &str) -> Self {
        HostSeries {
            host: host.to_string(),
            duration: metrics::histogram!(
                "tailgate_http_request_duration_seconds",
                "host" => host.to_string()
            ),
            response_bytes: metrics::counter!(
                "tailgate_http_response_bytes_total",
                "host" => host.to_string()
            ),
            requests: DashMap::default(),
        }
    }

    fn record(&self, method: &'static str, status: u16, finished: Finished) {
        let key = (method, status);
        match self.requests.get(&key) {
            Some(counter) => counter.increment(1),
            None => self
                .requests
                .entry(key)
                .or_insert_with(|| {
                    metrics::counter!(
                        "tailgate_http_requests_total",
                        "status" => status.to_string(),
                        "method" => method,
                        "host" => self.host.clone()
                    )
                })
                .increment(1),
        }
        self.duration.record(finished.request_time);
        self.response_bytes.increment(finished.bytes_sent);
    }
}
