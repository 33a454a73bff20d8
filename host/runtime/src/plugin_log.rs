//! Plugin log lines (the `log` import): kept while a hook runs and written
//! to tracing when it returns, with the request they concern, as nginx's
//! error log appends `client`, `request` and `host` to a line written during
//! a request. A plugin then reads no request field just to name it in a
//! rare line (each string copied into a guest costs an allocation there),
//! and every plugin's lines carry the same context. Lines written by
//! `configure` carry none.

use std::fmt;

use crate::bindings::types::{LogLevel, LogRecord, RequestHead};
use crate::host_state::GuestIdentity;
use crate::observer::{OutputSource, PluginObserver, PluginOutput};

/// Longest message kept; the rest is cut.
const MAX_LOG_BYTES: usize = 4096;
/// Most lines kept from one call; later ones are counted, not kept.
const MAX_LINES_PER_CALL: usize = 64;

/// The lines one call wrote, in order.
#[derive(Debug, Default)]
pub(crate) struct PluginLogs {
    lines: Vec<(LogLevel, String)>,
    /// Lines past [`MAX_LINES_PER_CALL`].
    dropped: usize,
}

impl PluginLogs {
    /// Keeps a line the guest logged, cut to [`MAX_LOG_BYTES`].
    pub(crate) fn push(&mut self, level: LogLevel, mut message: String) {
        if self.lines.len() >= MAX_LINES_PER_CALL {
            self.dropped += 1;
            return;
        }
        message.truncate(cut_at(&message, MAX_LOG_BYTES));
        self.lines.push((level, message));
    }

    /// The lines so far, leaving none (no allocation when there were none).
    pub(crate) fn take(&mut self) -> PluginLogs {
        std::mem::take(self)
    }

    /// Writes the lines to tracing (and the observer), tagged with the
    /// plugin, the route and, when the call served one, the request.
    pub(crate) fn emit(
        self,
        guest: &GuestIdentity,
        request: Option<RequestContext<'_>>,
        observer: Option<&dyn PluginObserver>,
    ) {
        if self.lines.is_empty() && self.dropped == 0 {
            return;
        }
        let (plugin, route) = (&*guest.plugin, &*guest.route);
        for (level, message) in &self.lines {
            match &request {
                Some(r) => with_request(*level, plugin, route, r, message),
                None => without_request(*level, plugin, route, message),
            }
            if let Some(observer) = observer {
                observer.plugin_output(&PluginOutput {
                    plugin,
                    route,
                    source: OutputSource::HostLog,
                    level: *level,
                    message,
                });
            }
        }
        if self.dropped > 0 {
            tracing::warn!(
                plugin,
                route,
                dropped = self.dropped,
                "plugin logged more than {MAX_LINES_PER_CALL} lines in one call; the rest were dropped"
            );
        }
    }
}

/// The request a call served, as its log lines name it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestContext<'a> {
    client: std::net::IpAddr,
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    host: &'a str,
    request_id: &'a str,
}

impl<'a> RequestContext<'a> {
    pub(crate) fn of_request(req: &'a RequestHead) -> Self {
        RequestContext {
            client: req.client_ip.into(),
            method: req.method.as_str(),
            path: text(&req.path),
            query: req.query.as_deref(),
            host: text(&req.host),
            request_id: text(&req.request_id),
        }
    }

    pub(crate) fn of_record(rec: &'a LogRecord) -> Self {
        RequestContext {
            client: rec.client_ip.into(),
            method: rec.method.as_str(),
            path: text(&rec.uri),
            query: None,
            host: text(&rec.host),
            request_id: text(&rec.request_id),
        }
    }
}

fn text(field: &Option<String>) -> &str {
    field.as_deref().unwrap_or("")
}

/// `GET /path?query`, nginx's `request` without the protocol.
struct RequestLine<'r, 'a>(&'r RequestContext<'a>);

impl fmt::Display for RequestLine<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        write!(f, "{} {}", r.method, r.path)?;
        match r.query {
            Some(query) => write!(f, "?{query}"),
            None => Ok(()),
        }
    }
}

fn with_request(level: LogLevel, plugin: &str, route: &str, r: &RequestContext<'_>, message: &str) {
    // Written only when a plugin logs: the allocation is not per request.
    let request = RequestLine(r).to_string();
    let request = request.as_str();
    let client = r.client.to_string();
    let client = client.as_str();
    let (host, request_id) = (r.host, r.request_id);
    macro_rules! event {
        ($level:ident) => {
            tracing::$level!(
                plugin,
                route,
                client,
                request,
                host,
                request_id,
                "{message}"
            )
        };
    }
    match level {
        LogLevel::Trace => event!(trace),
        LogLevel::Debug => event!(debug),
        LogLevel::Info => event!(info),
        LogLevel::Warn => event!(warn),
        LogLevel::Error => event!(error),
    }
}

fn without_request(level: LogLevel, plugin: &str, route: &str, message: &str) {
    match level {
        LogLevel::Trace => tracing::trace!(plugin, route, "{message}"),
        LogLevel::Debug => tracing::debug!(plugin, route, "{message}"),
        LogLevel::Info => tracing::info!(plugin, route, "{message}"),
        LogLevel::Warn => tracing::warn!(plugin, route, "{message}"),
        LogLevel::Error => tracing::error!(plugin, route, "{message}"),
    }
}

/// The largest char boundary of `message` at or below `max`.
fn cut_at(message: &str, max: usize) -> usize {
    if message.len() <= max {
        return message.len();
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_char_boundaries() {
        assert_eq!(cut_at("héllo", 2), 1);
        assert_eq!(cut_at("hello", 10), 5);
    }

    #[test]
    fn lines_past_the_cap_are_counted_not_kept() {
        let mut logs = PluginLogs::default();
        for i in 0..MAX_LINES_PER_CALL + 3 {
            logs.push(LogLevel::Info, format!("line {i}"));
        }
        logs.push(LogLevel::Warn, "x".repeat(MAX_LOG_BYTES + 10));
        let kept = logs.take();
        assert_eq!((kept.lines.len(), kept.dropped), (MAX_LINES_PER_CALL, 4));
        assert!(logs.lines.is_empty() && logs.dropped == 0);
        let mut long = PluginLogs::default();
        long.push(LogLevel::Warn, "é".repeat(MAX_LOG_BYTES));
        assert!(long.lines[0].1.len() <= MAX_LOG_BYTES);
    }

    #[test]
    fn the_request_line_has_the_query_when_there_is_one() {
        let mut req = RequestHead {
            host: Some("example.com".into()),
            path: Some("/a".into()),
            query: Some("b=1".into()),
            ..RequestHead::default()
        };
        let line = |req: &RequestHead| RequestLine(&RequestContext::of_request(req)).to_string();
        assert_eq!(line(&req), "GET /a?b=1");
        req.query = None;
        assert_eq!(line(&req), "GET /a");
    }
}
