//! The request path's one error type, [`ProxyError`], and the one place that
//! turns it into a response ([`ProxyError::respond`]): any phase of the
//! pipeline that fails returns a `ProxyError`; the pipeline hands it here,
//! which logs it once and answers with a status and a page that never shows
//! internals.

use std::path::PathBuf;
use std::time::Duration;

use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{full_body, BoxError, ProxyBody};
use crate::config::model::{ErrorPage, Route};
use crate::plugin_chain::HookFault;

/// Where a failure came from (pingora's error source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The client sent something we refuse.
    Downstream,
    /// The upstream could not be reached or misbehaved.
    Upstream,
    /// A plugin faulted and the route's policy is fail-closed.
    Plugin,
    /// A bug or a resource problem in the proxy itself.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route for host {host:?}")]
    UnknownHost { host: String, status: StatusCode },
    #[error("no route for path {path:?} on host {host:?}")]
    NoRoute { host: String, path: String },
    #[error("route {route}: path {path:?} is internal")]
    InternalPath { route: String, path: String },
    #[error("route {route}: request body larger than {limit} bytes")]
    BodyTooLarge { route: String, limit: u64 },
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The client went away before its request body ended (logged as
    /// nginx's 499; nobody reads the answer).
    #[error("route {route}: the client closed the connection before its request body ended")]
    ClientClosedRequest { route: String },
    #[error("upstream {upstream}: connecting: {source}")]
    UpstreamConnect {
        upstream: String,
        #[source]
        source: BoxError,
    },
    #[error("upstream {upstream}: no response head within {after:?}")]
    UpstreamTimeout { upstream: String, after: Duration },
    #[error("upstream {upstream}: {source}")]
    UpstreamExchange {
        upstream: String,
        #[source]
        source: BoxError,
    },
    #[error("upstream {upstream}: reading {path}: {source}")]
    StaticFile {
        upstream: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("route {route}: plugin {plugin}: {fault}")]
    PluginFailed {
        route: String,
        plugin: String,
        fault: HookFault,
    },
    #[error("route {route}: response hooks failed: {reason}")]
    ResponseHooksFailed { route: String, reason: String },
    #[error("internal error: {0}")]
    Internal(String),
}

/// nginx's 499 "client closed request": the status such a request is
/// logged with.
pub fn client_closed_request() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}

impl ProxyError {
    /// The error for a request whose body failed on the client's side
    /// (`None` when it did not).
    pub fn from_client_body(
        body: &crate::body::BodyCounter,
        route: &str,
        limit: u64,
    ) -> Option<Self> {
        use crate::body::ClientBodyError;
        if body.exceeded() {
            return Some(ProxyError::BodyTooLarge {
                route: route.to_string(),
                limit,
            });
        }
        Some(match body.client_error()? {
            ClientBodyError::Malformed => {
                ProxyError::BadRequest(format!("route {route}: malformed request body"))
            }
            ClientBodyError::Closed => ProxyError::ClientClosedRequest {
                route: route.to_string(),
            },
        })
    }

    pub fn source_kind(&self) -> ErrorSource {
        match self {
            ProxyError::UnknownHost { .. }
            | ProxyError::NoRoute { .. }
            | ProxyError::InternalPath { .. }
            | ProxyError::BodyTooLarge { .. }
            | ProxyError::BadRequest(_)
            | ProxyError::ClientClosedRequest { .. } => ErrorSource::Downstream,
            ProxyError::UpstreamConnect { .. }
            | ProxyError::UpstreamTimeout { .. }
            | ProxyError::UpstreamExchange { .. }
            | ProxyError::StaticFile { .. } => ErrorSource::Upstream,
            ProxyError::PluginFailed { .. } | ProxyError::ResponseHooksFailed { .. } => {
                ErrorSource::Plugin
            }
            ProxyError::Internal(_) => ErrorSource::Internal,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::UnknownHost { status, .. } => *status,
            ProxyError::NoRoute { .. } | ProxyError::InternalPath { .. } => StatusCode::NOT_FOUND,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::ClientClosedRequest { .. } => client_closed_request(),
            ProxyError::UpstreamConnect { .. } | ProxyError::UpstreamExchange { .. } => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::StaticFile { .. }
            | ProxyError::PluginFailed { .. }
            | ProxyError::ResponseHooksFailed { .. }
            | ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Log this error (once) and make the response the client gets: the
    /// route's error page for the status when the failure is the upstream's
    /// (or, as the route's `error_pages_for` says, any of its refusals),
    /// else a short plain-text page naming only the status.
    pub fn respond(&self, route: Option<&Route>, request_id: &str) -> Response<ProxyBody> {
        let status = self.status();
        let route_name = route.map_or("", |r| r.name.0.as_str());
        match self.source_kind() {
            // Plugin faults were already reported by the plugin chain.
            ErrorSource::Downstream | ErrorSource::Plugin => {
                tracing::debug!(%request_id, route = route_name, status = status.as_u16(), "{self}")
            }
            ErrorSource::Upstream => {
                tracing::warn!(%request_id, route = route_name, status = status.as_u16(), "{self}")
            }
            ErrorSource::Internal => {
                tracing::error!(%request_id, route = route_name, status = status.as_u16(), "{self}")
            }
        }
        let page = route
            .filter(|r| {
                self.source_kind() == ErrorSource::Upstream || r.error_pages_for.dresses_refusals()
            })
            .and_then(|r| r.error_pages.get(&status.as_u16()));
        match page {
            Some(page) => error_page_response(status, page),
            None => status_response(status),
        }
    }
}

/// A host-made page for `status`: "502 Bad Gateway\n".
pub fn status_response(status: StatusCode) -> Response<ProxyBody> {
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut resp = Response::new(full_body(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The route's configured page, served with `status`.
pub fn error_page_response(status: StatusCode, page: &ErrorPage) -> Response<ProxyBody> {
    let mut resp = Response::new(full_body(page.body.clone()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(page.content_type),
    );
    resp
}

/// An error and its sources on one line (hyper's own message is terse).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn error_pages_never_leak_internals() {
        let err = ProxyError::UpstreamConnect {
            upstream: "docs".into(),
            source: "tcp connect error: Connection refused (os error 111) to 10.1.2.3:8080".into(),
        };
        let resp = err.respond(None, "id");
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&body[..], b"502 Bad Gateway\n");
    }

    #[test]
    fn statuses_by_error() {
        let timeout = ProxyError::UpstreamTimeout {
            upstream: "u".into(),
            after: Duration::from_secs(1),
        };
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        let too_large = ProxyError::BodyTooLarge {
            route: "r".into(),
            limit: 1,
        };
        assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(too_large.source_kind(), ErrorSource::Downstream);
        let plugin = ProxyError::PluginFailed {
            route: "r".into(),
            plugin: "p".into(),
            fault: HookFault::Plugin(tailgate_runtime::PluginFault::Trap("unreachable".into())),
        };
        assert_eq!(plugin.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(plugin.source_kind(), ErrorSource::Plugin);
    }
}
