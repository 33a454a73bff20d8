//! The response as it stands between the pipeline's phases: what the
//! upstream (or a plugin, or an error) produced, before the response hooks
//! run. Also builds the response for a plugin's immediate answer.

use http::{header, Response, StatusCode};
use tailgate_runtime::ImmediateResponse;

use super::body::{full_body, ProxyBody};
use super::context::list_to_headers;
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
    /// headers are the host's business and are dropped.
    pub fn immediate(answer: ImmediateResponse) -> Self {
        let status =
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut headers = list_to_headers(&answer.headers);
        strip_hop_by_hop(&mut headers, None);
        headers.remove(header::CONTENT_LENGTH);
        let mut response = Response::new(full_body(answer.body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Reply {
            response,
            host_generated: false,
            upgrade: None,
        }
    }
}
