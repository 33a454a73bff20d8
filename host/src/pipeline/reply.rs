//! The response as it stands between the pipeline's phases: what the
//! upstream (or a plugin, or an error) produced, before the response hooks
//! run. Also builds the response for a plugin's immediate answer, dressed
//! in the route's error page when its `error_pages_for` says so.

use http::{header, HeaderValue, Response, StatusCode};
use tailgate_runtime::ImmediateResponse;

use super::context::list_to_headers;
use crate::body::{full_body, ProxyBody};
use crate::config::model::Route;
use crate::error::ProxyError;
use crate::forwarding::strip_hop_by_hop;
use crate::upstream::PendingUpgrade;

/// A response on its way to the response hooks.
pub struct Reply {
    pub response: Response<ProxyBody>,
    /// The host made it (upstream failure, body too large, plugin failure,
    /// error page): nginx's `always` case for response hooks.
    pub host_generated: bool,
    /// The upstream switched protocols; the tunnel starts once the 101 is sent.
    pub upgrade: Option<PendingUpgrade>,
}

impl Reply {
    /// A response from the upstream.
    pub fn upstream(response: Response<ProxyBody>, upgrade: Option<PendingUpgrade>) -> Self {
        Reply {
            response,
            host_generated: false,
            upgrade,
        }
    }

    /// A response the host made.
    pub fn host(response: Response<ProxyBody>) -> Self {
        Reply {
            response,
            host_generated: true,
            upgrade: None,
        }
    }

    /// The error's response, via the one place that makes them.
    pub fn error(err: &ProxyError, route: Option<&Route>, request_id: &str) -> Self {
        Self::host(err.respond(route, request_id))
    }

    /// A plugin's answer (already checked by the plugin chain). Framing
    /// headers are the host's business and are dropped. When `route`'s
    /// error pages dress this answer (`error_pages_for`), the page replaces
    /// its body and `Content-Type`; its status and other headers
    /// (`Retry-After`) stay.
    pub fn immediate(answer: ImmediateResponse, route: Option<&Route>) -> Self {
        let status =
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut headers = list_to_headers(&answer.headers);
        strip_hop_by_hop(&mut headers, None);
        headers.remove(header::CONTENT_LENGTH);
        let page = route
            .filter(|r| {
                r.error_pages_for
                    .dresses_plugin_answer(!answer.body.is_empty())
            })
            .and_then(|r| r.error_pages.get(&status.as_u16()));
        let body = match page {
            Some(page) => {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(page.content_type),
                );
                page.body.clone()
            }
            None => answer.body.into(),
        };
        let mut response = Response::new(full_body(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Reply {
            response,
            host_generated: false,
            upgrade: None,
        }
    }
}
