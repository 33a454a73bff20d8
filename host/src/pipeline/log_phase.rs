//! The log phase, the pipeline's last: it always runs — for proxied
//! requests, plugin answers, host-made errors, unknown hosts and upgrades —
//! once the response body has finished streaming (or was abandoned), so
//! `bytes_sent` and `request_time` are true. Builds the WIT `LogRecord`,
//! lets the route's log hooks shape it, hands the line to the access log,
//! and records the request metrics.

use std::time::UNIX_EPOCH;

use tailgate_runtime::{Header, HookSet, LogRecord};

use super::context::{protocol_name, RequestContext};
use super::run_hook;
use crate::access_log::{default_line, AccessLog};
use crate::plugin_chain::LogDecision;

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

    /// Run the log phase with the response body's final size.
    pub fn emit(self, bytes_sent: u64) {
        let record = self.record(bytes_sent);
        record_metrics(&self.ctx, &record);
        let hooked = self.ctx.chain.as_ref().filter(|c| c.has_hook(HookSet::LOG));
        let line = match hooked {
            None => Some((default_line(&record), Vec::new())),
            Some(chain) => match run_hook(|| chain.on_log(&record)) {
                LogDecision::Line(line) => Some((line.line, line.labels)),
                LogDecision::Drop => None,
                LogDecision::Default => Some((default_line(&record), Vec::new())),
                // Reported and counted by the chain; a line is never lost.
                LogDecision::Failed { .. } => Some((default_line(&record), Vec::new())),
            },
        };
        if let Some((line, labels)) = line {
            self.access_log.write_labelled_line(line, &labels);
        }
    }

    fn record(&self, bytes_sent: u64) -> LogRecord {
        let ctx = &self.ctx;
        LogRecord {
            time: humantime::format_rfc3339_millis(ctx.started_at).to_string(),
            time_unix_ms: ctx
                .started_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            client_ip: ctx.client.client_ip.to_string(),
            peer_addr: ctx.client.peer.to_string(),
            method: ctx.method.as_str().to_string(),
            scheme: ctx.client.scheme.clone(),
            host: ctx.host.clone(),
            uri: ctx.uri.clone(),
            protocol: protocol_name(ctx.version).to_string(),
            status: self.status,
            bytes_sent,
            bytes_received: ctx.body.bytes(),
            request_time: ctx.start.elapsed().as_secs_f64(),
            upstream_response_time: ctx.upstream_time.map(|d| d.as_secs_f64()),
            upstream_addr: ctx.upstream_addr.clone(),
            cache_status: ctx
                .cache_status
                .map_or_else(String::new, |s| s.as_str().to_string()),
            route: ctx.route_name().to_string(),
            request_id: ctx.client.request_id.clone(),
            user_agent: ctx.user_agent.clone(),
            referer: ctx.referer.clone(),
            request_headers: ctx.request_headers.clone(),
            response_headers: self.response_headers.clone(),
            vars: ctx.vars.clone(),
        }
    }
}

/// Request counters and histograms. Labels stay low-cardinality: the host
/// only when a route matched, the method only when standard.
fn record_metrics(ctx: &RequestContext, record: &LogRecord) {
    let host = if ctx.route.is_some() {
        record.host.clone()
    } else {
        "_unrouted".to_string()
    };
    let method = match ctx.method.as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" | "CONNECT"
        | "TRACE") => m.to_string(),
        _ => "OTHER".to_string(),
    };
    metrics::counter!(
        "tailgate_http_requests_total",
        "status" => record.status.to_string(),
        "method" => method,
        "host" => host.clone()
    )
    .increment(1);
    metrics::histogram!("tailgate_http_request_duration_seconds", "host" => host.clone())
        .record(record.request_time);
    metrics::counter!("tailgate_http_response_bytes_total", "host" => host)
        .increment(record.bytes_sent);
}
