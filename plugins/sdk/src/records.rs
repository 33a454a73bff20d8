//! What the hooks are handed, as plugin code reads it: [`RequestHead`],
//! [`ResponseHead`] and [`LogRecord`], built from the contract's records by
//! the export glue. The contract sends the fields a plugin did not ask for
//! (see [`Plugin::request_fields`](crate::Plugin::request_fields)) as
//! `none`; here they are empty, so hooks read plain strings.

use crate::bindings::tailgate::plugin::types as wit;
use crate::{Header, Var};

/// What a plugin sees of a request, after trusted-proxy resolution. A field
/// the plugin did not ask for is empty (`query`: `None`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestHead {
    /// e.g. "GET"
    pub method: String,
    /// "http" or "https", as the client used it.
    pub scheme: String,
    /// Host without port, lower case.
    pub host: String,
    /// Path, percent-encoded as received, without the query.
    pub path: String,
    /// The query without the leading '?', if any.
    pub query: Option<String>,
    /// The request header fields the plugin asked for, in arrival order,
    /// names lower case.
    pub headers: Vec<Header>,
    /// The client's address (the socket peer, or the client-IP header a
    /// trusted proxy sent).
    pub client_ip: String,
    /// Name of the route that matched.
    pub route: String,
    /// Unique id of this request (also sent upstream as x-request-id).
    pub request_id: String,
}

/// What a plugin sees of a response.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResponseHead {
    pub status: u16,
    /// The response header fields the plugin asked for, names lower case.
    pub headers: Vec<Header>,
    /// True when the host made this response itself (upstream failure,
    /// timeout, body too large, plugin failure): nginx's `always` case.
    pub host_generated: bool,
}

/// The finished exchange, handed to the log hook. A text field the plugin
/// did not ask for is empty (`upstream_addr`: `None`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogRecord {
    /// Request start, RFC 3339 with milliseconds, UTC.
    pub time: String,
    /// Request start, Unix epoch milliseconds.
    pub time_unix_ms: u64,
    pub client_ip: String,
    /// Socket peer "ip:port".
    pub peer_addr: String,
    pub method: String,
    pub scheme: String,
    pub host: String,
    /// Path and query as received.
    pub uri: String,
    /// e.g. "HTTP/1.1"
    pub protocol: String,
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes_sent: u64,
    /// Request body bytes received from the client.
    pub bytes_received: u64,
    /// Seconds from the first byte read to the last byte sent.
    pub request_time: f64,
    /// Seconds the upstream took to answer (headers), if one was asked.
    pub upstream_response_time: Option<f64>,
    pub upstream_addr: Option<String>,
    /// HIT, MISS, ...; empty when the route has no cache.
    pub cache_status: String,
    pub route: String,
    pub request_id: String,
    /// The User-Agent request header, empty when absent.
    pub user_agent: String,
    /// The Referer request header, empty when absent.
    pub referer: String,
    /// The Host request header as sent, port included (nginx `$http_host`;
    /// the authority for HTTP/2, the routed host when the request named
    /// none).
    pub http_host: String,
    pub request_headers: Vec<Header>,
    pub response_headers: Vec<Header>,
    /// Vars set by earlier hooks (e.g. the rate-limit outcome).
    pub vars: Vec<Var>,
}

impl From<wit::RequestHead> for RequestHead {
    fn from(head: wit::RequestHead) -> Self {
        RequestHead {
            method: head.method.unwrap_or_default(),
            scheme: head.scheme.unwrap_or_default(),
            host: head.host.unwrap_or_default(),
            path: head.path.unwrap_or_default(),
            query: head.query,
            headers: head.headers.unwrap_or_default(),
            client_ip: head.client_ip.unwrap_or_default(),
            route: head.route.unwrap_or_default(),
            request_id: head.request_id.unwrap_or_default(),
        }
    }
}

impl From<wit::ResponseHead> for ResponseHead {
    fn from(head: wit::ResponseHead) -> Self {
        ResponseHead {
            status: head.status,
            headers: head.headers.unwrap_or_default(),
            host_generated: head.host_generated,
        }
    }
}

impl From<wit::LogRecord> for LogRecord {
    fn from(rec: wit::LogRecord) -> Self {
        LogRecord {
            time: rec.time.unwrap_or_default(),
            time_unix_ms: rec.time_unix_ms,
            client_ip: rec.client_ip.unwrap_or_default(),
            peer_addr: rec.peer_addr.unwrap_or_default(),
            method: rec.method.unwrap_or_default(),
            scheme: rec.scheme.unwrap_or_default(),
            host: rec.host.unwrap_or_default(),
            uri: rec.uri.unwrap_or_default(),
            protocol: rec.protocol.unwrap_or_default(),
            status: rec.status,
            bytes_sent: rec.bytes_sent,
            bytes_received: rec.bytes_received,
            request_time: rec.request_time,
            upstream_response_time: rec.upstream_response_time,
            upstream_addr: rec.upstream_addr,
            cache_status: rec.cache_status.unwrap_or_default(),
            route: rec.route.unwrap_or_default(),
            request_id: rec.request_id.unwrap_or_default(),
            user_agent: rec.user_agent.unwrap_or_default(),
            referer: rec.referer.unwrap_or_default(),
            http_host: rec.http_host.unwrap_or_default(),
            request_headers: rec.request_headers.unwrap_or_default(),
            response_headers: rec.response_headers.unwrap_or_default(),
            vars: rec.vars.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_left_out_by_the_host_read_as_empty() {
        let head = RequestHead::from(wit::RequestHead {
            method: None,
            scheme: None,
            host: None,
            path: Some("/a".to_owned()),
            query: None,
            headers: None,
            client_ip: Some("203.0.113.7".to_owned()),
            route: None,
            request_id: None,
        });
        assert_eq!(
            head,
            RequestHead {
                path: "/a".to_owned(),
                client_ip: "203.0.113.7".to_owned(),
                ..RequestHead::default()
            }
        );
        let resp = ResponseHead::from(wit::ResponseHead {
            status: 204,
            headers: None,
            host_generated: true,
        });
        assert_eq!((resp.status, resp.headers.len()), (204, 0));
    }
}
