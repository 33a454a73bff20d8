//! The response phase and the hand-over to the send and log phases: the
//! route's response hooks edit the head (also of host-made responses, which
//! they see as `host-generated`); a hook failure under a fail-closed policy
//! replaces the response with a host-made 500. The body is then wrapped so
//! the log phase fires when it has been sent — or, for an upgrade, when the
//! tunnel closes.

use http::{header, Response};
use http_body_util::BodyExt;
use tailgate_runtime::{HookSet, RequestHead, ResponseHead};

use super::context::{filtered_list, RequestContext};
use super::log_phase::PendingLog;
use super::logged_body::{LogGuard, LoggedBody};
use super::reply::Reply;
use crate::access_log::AccessLog;
use crate::body::{empty_body, ProxyBody};
use crate::error::ProxyError;
use crate::forwarding::strip_hop_by_hop;
use crate::lifecycle::Lifecycle;
use crate::plugin_chain::apply_to_map;

/// Run the response hooks (when the request was routed and hooked) and
/// return the response to send, its log phase armed.
pub async fn finish(
    ctx: RequestContext,
    head: Option<&mut RequestHead>,
    reply: Reply,
    access_log: &AccessLog,
    lifecycle: &Lifecycle,
) -> Response<ProxyBody> {
    let Reply {
        mut response,
        host_generated,
        mut upgrade,
    } = reply;

    let hooked = ctx.chain.as_ref().filter(|c| c.has_hook(HookSet::RESPONSE));
    if let (Some(chain), Some(head)) = (hooked, head) {
        // Only the fields the response hooks read are copied into the list.
        let mut resp_head = ResponseHead {
            status: response.status().as_u16(),
            headers: Some(filtered_list(response.headers(), chain.response_fields())),
            host_generated,
        };
        match chain.on_response(head, &mut resp_head).await {
            Ok(edits) => {
                let keep_upgrade = upgrade
                    .as_ref()
                    .and_then(|_| response.headers().get(header::UPGRADE).cloned());
                let headers = response.headers_mut();
                apply_to_map(headers, &edits);
                strip_hop_by_hop(headers, keep_upgrade.as_ref());
            }
            Err(failure) => {
                let err = ProxyError::ResponseHooksFailed {
                    route: ctx.route_name().to_string(),
                    reason: failure.to_string(),
                };
                response = err.respond(ctx.route.as_deref(), &ctx.client.request_id);
                upgrade = None;
            }
        }
    }

    let status = response.status().as_u16();
    // Only a log hook reads the response headers of the record: the
    // fields it asked for.
    let logged_headers = match ctx.chain.as_ref().filter(|c| c.has_hook(HookSet::LOG)) {
        Some(chain) => filtered_list(response.headers(), chain.log_fields().1),
        None => Vec::new(),
    };
    let pending = PendingLog::new(ctx, status, logged_headers, access_log.clone());
    match upgrade {
        Some(upgrade) => {
            // Tracked, so a shutdown drain waits for open WebSockets.
            lifecycle.tunnels().spawn(async move {
                match upgrade.run().await {
                    Ok(bytes) => {
                        pending.add_received(bytes.from_client);
                        pending.emit(bytes.to_client);
                    }
                    Err(e) => {
                        tracing::debug!("upgrade did not complete: {e}");
                        pending.emit(0);
                    }
                }
            });
            response.map(|_| empty_body())
        }
        None => response.map(|body| LoggedBody::new(body, LogGuard::new(pending)).boxed()),
    }
}
